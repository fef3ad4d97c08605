"""Machine-wide kernel limits that privileged containers share with the host.

Every privileged container runs as the host's root, so all of them draw on
root's one budget of inotify instances (fs.inotify.max_user_instances,
128 by default). A booting Debian 12 container's systemd takes about 8;
when none is left, systemd in the container cannot create its manager
("Failed to allocate manager object: Too many open files"), exits, and the
container stops during boot. With other containers and VMs on the machine
that happens with as few as 2 new containers, so we raise the limit before
starting any. Raising only: a limit someone set higher is left alone.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger("cloudinitd.local")

INOTIFY_INSTANCES = Path("/proc/sys/fs/inotify/max_user_instances")
# ~8 per container: room for hundreds of containers; an instance costs the
# kernel well under a kilobyte until it queues events.
INOTIFY_FLOOR = 8192

# What systemd prints on the console when the budget is exhausted.
EXHAUSTED_MARK = "Too many open files"


def inotify_limit() -> int | None:
    try:
        return int(INOTIFY_INSTANCES.read_text().strip())
    except (OSError, ValueError):
        return None


def ensure_inotify_instances(floor: int = INOTIFY_FLOOR) -> None:
    """Raise root's inotify instance limit to at least `floor` (logged; never lowered)."""
    current = inotify_limit()
    if current is None or current >= floor:
        return
    try:
        INOTIFY_INSTANCES.write_text(f"{floor}\n")
    except OSError as exc:
        # Not fatal: containers may still boot; a stop during boot is then
        # reported with exhaustion_hint().
        log.warning("could not raise fs.inotify.max_user_instances from %d: %s", current, exc)
        return
    log.info(
        "raised fs.inotify.max_user_instances from %d to %d "
        "(privileged containers share root's inotify budget)",
        current,
        floor,
    )


def exhaustion_hint(console: list[str]) -> str:
    """An explanation to append when a container's console shows the budget ran out."""
    if not any(EXHAUSTED_MARK in line for line in console):
        return ""
    return (
        f" (root's inotify instances are exhausted: fs.inotify.max_user_instances="
        f"{inotify_limit()}; raise it, e.g. sysctl -w fs.inotify.max_user_instances="
        f"{INOTIFY_FLOOR})"
    )
