"""Starting local instances, and bringing back ones whose init exits during boot.

A container can stop on its own before sshd is up: systemd in it exits
("Exiting PID 1...") when it cannot allocate its manager, e.g. when root's
shared inotify budget is used up by other containers (see hostlimits). The
restart is bounded and logged, and the last failure carries the container's
console and LXC log tail, so a real fault is never hidden.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cloudinitd.errors import ProviderError
from cloudinitd.providers.local import hostlimits, image, lxc, rootfs
from cloudinitd.providers.local import instance as inst

log = logging.getLogger("cloudinitd.local")

# Restarts of a container found stopped while waiting for it to boot, before
# wait_running gives up.
MAX_BOOT_RESTARTS = 2


def start_all(lxcpath: Path, names: list[str]) -> list[str]:
    """Start the containers in parallel; returns one error message per failure."""

    def start(name: str) -> str | None:
        try:
            start_one(lxcpath, name)
        except ProviderError as exc:
            return str(exc)
        return None

    hostlimits.ensure_inotify_instances()
    hostlimits.ensure_subids("root", image.ID_BASE, image.ID_COUNT)
    with ThreadPoolExecutor(max_workers=min(8, len(names) or 1)) as pool:
        return [r for r in pool.map(start, names) if r]


def start_one(lxcpath: Path, name: str) -> None:
    directory = lxcpath / name
    meta = inst.read_sidecar(directory) or {}
    if meta.get("lower"):
        rootfs.mount(directory, Path(meta["lower"]))
    # The container's root (a plain uid here) must reach its rootfs and /dev/fuse.
    try:
        hostlimits.allow_traverse(directory, image.ID_BASE)
    except OSError as exc:
        raise ProviderError(
            f"the root of container {name} (uid {image.ID_BASE} here) cannot reach {directory}, "
            f"and an ACL letting it through could not be set ({exc}); give uid "
            f"{image.ID_BASE} search (x) permission on every directory down to it"
        ) from None
    try:
        lxc.start(name, lxcpath)
    except ProviderError as exc:
        # LXC's cgroup driver is cgfsng; its errors name it.
        config = directory / "config"
        text = config.read_text()
        if "cgfsng" not in str(exc) or "\nlxc.cgroup" not in text:
            raise
        # cgroup limits refused (e.g. a controller not delegated): run
        # without them and say so in describe's extra.
        lines = [ln for ln in text.splitlines() if not ln.startswith("lxc.cgroup")]
        config.write_text("\n".join(lines) + "\n")
        what = f"size {meta['size']}" if meta.get("size") else "pids"
        meta["limits_note"] = f"{what} limits refused by cgroups: {exc}"[:300]
        lxc.start(name, lxcpath)
    meta["started"] = True
    inst.write_sidecar(directory, meta)


def restart_stopped(
    lxcpath: Path, name: str, stops: dict[str, int], progress: Callable[[str], None]
) -> None:
    """Start again a started container that is STOPPED, at most MAX_BOOT_RESTARTS times.

    `stops` counts the stops seen per container during one wait. Raises
    ProviderError naming the container, with its log tail, once the
    restarts are used up.
    """
    stops[name] = stops.get(name, 0) + 1
    tail = lxc.log_tail(name, lxcpath) or "no log"
    hint = hostlimits.exhaustion_hint(lxc.console_lines(name, lxcpath))
    if stops[name] > MAX_BOOT_RESTARTS:
        raise ProviderError(
            f"local instance {name} stopped during boot {stops[name]} times "
            f"(restarted {MAX_BOOT_RESTARTS} times): {tail}{hint}"
        )
    log.warning(
        "local instance %s stopped during boot; restarting it (%d of %d): %s%s",
        name,
        stops[name],
        MAX_BOOT_RESTARTS,
        tail,
        hint,
    )
    progress(f"local instance {name} stopped during boot, restarting it")
    directory = lxcpath / name
    meta = inst.read_sidecar(directory)
    if meta is not None:
        meta["boot_restarts"] = meta.get("boot_restarts", 0) + 1
        inst.write_sidecar(directory, meta)
    hostlimits.ensure_inotify_instances()
    try:
        start_one(lxcpath, name)
    except ProviderError as exc:
        # Still STOPPED at the next poll, which counts as the next stop.
        log.warning("restarting local instance %s failed: %s", name, exc)
