"""One local instance on disk: its LXC config, sidecar record and rootfs files.

A container directory `<lxcpath>/<name>/` holds:
    config             the LXC config (overlay rootfs on the cached base image)
    delta0/            the overlay upper layer: the instance's own disk
    cloudinitd.json    the sidecar: run, service, index, plan, client token, tags,
                       hostname, address; lets `find_run_instances` work without
                       the run store
"""

from __future__ import annotations

import json
import os
import re
import secrets
from pathlib import Path
from typing import Any

from cloudinitd.providers.local.lxc import CONSOLE_LOG

SIDECAR = "cloudinitd.json"
UPPER = "delta0"

# size -> (memory bytes, cpu shares / weight). Only 2 cores here: limits are
# relative shares, memory is a hard cap.
SIZES: dict[str, tuple[int, int]] = {
    "small": (512 << 20, 256),
    "medium": (2 << 30, 512),
    "large": (4 << 30, 1024),
}


def new_name(lxcpath: Path) -> str:
    while True:
        name = f"cid-{secrets.token_hex(4)}"
        if not (lxcpath / name).exists():
            return name


def read_sidecar(directory: Path) -> dict[str, Any] | None:
    try:
        return json.loads((directory / SIDECAR).read_text())
    except (OSError, ValueError):
        return None


def write_sidecar(directory: Path, meta: dict[str, Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / (SIDECAR + ".tmp")
    tmp.write_text(json.dumps(meta, indent=1, sort_keys=True))
    tmp.replace(directory / SIDECAR)


def all_sidecars(lxcpath: Path) -> dict[str, dict[str, Any]]:
    """container name -> sidecar, for every cloudinitd container under lxcpath."""
    out = {}
    if not lxcpath.is_dir():
        return out
    for d in sorted(lxcpath.iterdir()):
        meta = read_sidecar(d)
        if meta is not None:
            out[d.name] = meta
    return out


def uts_name(hostname: str) -> str:
    """A hostname the kernel and resolvers accept."""
    name = re.sub(r"[^A-Za-z0-9-]", "-", hostname).strip("-")[:63]
    return name or "instance"


def cgroup_limits(size: str | None) -> list[str]:
    """LXC config lines for a size, for the cgroup layout this machine has."""
    if size is None:
        return []
    memory, shares = SIZES[size]
    if Path("/sys/fs/cgroup/memory").is_dir():  # v1 (or hybrid) controllers
        return [f"lxc.cgroup.memory.limit_in_bytes = {memory}", f"lxc.cgroup.cpu.shares = {shares}"]
    weight = max(1, shares * 100 // 1024)
    return [f"lxc.cgroup2.memory.max = {memory}", f"lxc.cgroup2.cpu.weight = {weight}"]


def lxc_config(
    name: str,
    hostname: str,
    lower: Path,
    directory: Path,
    bridge: str,
    address: str,
    prefixlen: int,
    gateway: str,
    limits: list[str],
) -> str:
    mac = "00:16:3e:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(3))
    lines = [
        "# written by cloudinitd (local provider)",
        "lxc.include = /usr/share/lxc/config/common.conf",
        "lxc.arch = linux64",
        f"lxc.uts.name = {uts_name(hostname)}",
        f"lxc.rootfs.path = overlay:{lower}:{directory / UPPER}",
        # No AppArmor on this kernel; where there is, the generated profile
        # blocks the FUSE mounts the sshfs plans need.
        "lxc.apparmor.profile = unconfined",
        "lxc.net.0.type = veth",
        f"lxc.net.0.link = {bridge}",
        "lxc.net.0.flags = up",
        "lxc.net.0.name = eth0",
        f"lxc.net.0.hwaddr = {mac}",
        f"lxc.net.0.ipv4.address = {address}/{prefixlen}",
        f"lxc.net.0.ipv4.gateway = {gateway}",
        # systemd says on the console why it gave up when a boot fails.
        f"lxc.console.logfile = {directory / CONSOLE_LOG}",
        # FUSE for sshfs: common.conf already allows the device (c 10:229).
        "lxc.mount.entry = /dev/fuse dev/fuse none bind,create=file,optional 0 0",
        *limits,
        "",
    ]
    return "\n".join(lines)


def _mkdirs_like_lower(upper: Path, lower: Path, rel: Path) -> None:
    """Create upper/rel's parents with the base image's mode and owner.

    An overlay directory shows the upper layer's attributes, so a 0755
    /root made here would override the base's 0700.
    """
    current = Path()
    for part in rel.parent.parts:
        current = current / part
        target = upper / current
        if target.exists():
            continue
        target.mkdir()
        try:
            st = (lower / current).stat()
        except FileNotFoundError:
            continue
        os.chown(target, st.st_uid, st.st_gid)
        target.chmod(st.st_mode & 0o7777)


def write_guest_file(upper: Path, lower: Path, rel: str, text: str, mode: int = 0o644) -> None:
    """Write a file into a stopped instance's disk (its overlay upper layer)."""
    relp = Path(rel.lstrip("/"))
    _mkdirs_like_lower(upper, lower, relp)
    path = upper / relp
    tmp = path.with_name(path.name + ".cidtmp")
    tmp.write_text(text)
    tmp.chmod(mode)
    tmp.replace(path)


def write_running_file(pid: int, rel: str, text: str, mode: int = 0o644) -> None:
    """Write a file inside a running container through its init's root."""
    path = Path(f"/proc/{pid}/root") / rel.lstrip("/")
    tmp = path.with_name(path.name + ".cidtmp")
    tmp.write_text(text)
    tmp.chmod(mode)
    tmp.replace(path)
