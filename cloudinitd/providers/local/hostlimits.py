"""Machine-wide settings and limits that containers share with the host.

Every container's root is the same uid here (image.ID_BASE; the kernel
also charges a user namespace's counts to its owner, root), so all of them
draw on one budget of inotify instances (fs.inotify.max_user_instances,
128 by default). A booting Debian 12 container's systemd takes about 8;
when none is left, systemd in the container cannot create its manager
("Failed to allocate manager object: Too many open files"), exits, and the
container stops during boot. With other containers and VMs on the machine
that happens with as few as 2 new containers, so we raise the limit before
starting any. Raising only: a limit someone set higher is left alone.
"""

from __future__ import annotations

import logging
import os
import struct
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
        "(all containers share one inotify budget)",
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


SUBID_FILES = (Path("/etc/subuid"), Path("/etc/subgid"))


def ensure_subids(user: str, base: int, count: int) -> None:
    """Delegate ids base..base+count-1 to `user` in /etc/subuid and /etc/subgid.

    LXC maps a container's ids with newuidmap/newgidmap when they are
    installed, and those allow only ranges listed there, also for root.
    Adds the line once; ranges already listed are left alone.
    """
    line = f"{user}:{base}:{count}"
    for path in SUBID_FILES:
        try:
            text = path.read_text()
        except FileNotFoundError:
            text = ""
        if line in text.splitlines():
            continue
        tmp = path.with_name(path.name + ".cloudinitd-tmp")
        tmp.write_text(text + ("" if not text or text.endswith("\n") else "\n") + line + "\n")
        tmp.chmod(0o644)
        tmp.replace(path)
        log.info("added %s to %s (ids for unprivileged containers)", line, path)


# POSIX ACL xattr layout (linux/posix_acl_xattr.h): a version, then
# (tag, perm, id) entries sorted by tag and id.
_ACL_XATTR = "system.posix_acl_access"
_ACL_VERSION = 2
_USER_OBJ, _USER, _GROUP_OBJ, _GROUP, _MASK, _OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
_NO_ID = 0xFFFFFFFF


def _acl_entries(path: Path, mode: int) -> list[tuple[int, int, int]]:
    try:
        raw = os.getxattr(path, _ACL_XATTR)
    except OSError:
        raw = b""
    if len(raw) >= 4 and struct.unpack_from("<I", raw)[0] == _ACL_VERSION:
        return [struct.unpack_from("<HHI", raw, off) for off in range(4, len(raw), 8)]
    return [
        (_USER_OBJ, (mode >> 6) & 7, _NO_ID),
        (_GROUP_OBJ, (mode >> 3) & 7, _NO_ID),
        (_OTHER, mode & 7, _NO_ID),
    ]


def allow_traverse(path: Path, uid: int) -> list[Path]:
    """Let `uid` pass through (x, never read or write) every directory down to `path`.

    An unprivileged container's root (a plain uid here) must reach its
    rootfs layers; directories such as a 0700 home or image cache would
    stop it. Instead of opening them to everyone, each one it cannot
    traverse gets an ACL entry for that one uid. Returns the directories
    changed.
    """
    changed = []
    path = path.resolve()
    for directory in [*reversed(path.parents), path]:
        st = directory.stat()
        if st.st_mode & 0o001 or st.st_uid == uid:
            continue
        entries = _acl_entries(directory, st.st_mode)
        mask = next((perm for tag, perm, _ in entries if tag == _MASK), 7)
        # A chmod since (e.g. back to 0700) lowers the mask and with it the entry.
        if mask & 1 and any(t == _USER and e == uid and p & 1 for t, p, e in entries):
            continue
        entries = [e for e in entries if not (e[0] == _USER and e[2] == uid) and e[0] != _MASK]
        entries.append((_USER, 1, uid))
        group_class = 0
        for tag, perm, _ in entries:
            if tag in (_USER, _GROUP_OBJ, _GROUP):
                group_class |= perm
        entries.append((_MASK, group_class, _NO_ID))
        entries.sort(key=lambda e: (e[0], e[2]))
        raw = struct.pack("<I", _ACL_VERSION) + b"".join(struct.pack("<HHI", *e) for e in entries)
        os.setxattr(directory, _ACL_XATTR, raw)
        changed.append(directory)
    return changed
