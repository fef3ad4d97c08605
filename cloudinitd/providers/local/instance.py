"""One local instance on disk: its LXC config, sidecar record and rootfs files.

A container directory `<lxcpath>/<name>/` holds:
    config             the LXC config (unprivileged: a user namespace)
    rootfs/            where the overlay of the cached base image and delta0/ is
                       mounted while the container runs (rootfs.py)
    disk.img, disk/    the instance's own size-capped filesystem and its mount
                       point (disk.py), holding:
      delta0/          the overlay upper layer: everything the instance writes
      work/            the overlay's work directory
    fuse               the container's own /dev/fuse node
    cloudinitd.json    the sidecar: run, service, index, plan, client token, tags,
                       hostname, address; lets `find_run_instances` work without
                       the run store
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import stat
from pathlib import Path, PurePosixPath
from typing import Any

from cloudinitd.providers import guestfs
from cloudinitd.providers.local import disk, lxc, rootfs
from cloudinitd.providers.local.image import ID_BASE, ID_COUNT
from cloudinitd.providers.local.lxc import CONSOLE_LOG

SIDECAR = "cloudinitd.json"
UPPER = rootfs.UPPER
FUSE_NODE = "fuse"  # the container's /dev/fuse (make_fuse_device)

# Processes (and threads) per instance: a fork bomb in one stops there. A
# booted Debian container uses ~30; builds with parallel jobs stay far below.
PIDS_MAX = 4096
# The console log (written by LXC on this machine) is cut at this size and
# rotated once (console.log.1), so a guest cannot fill this machine's disk.
CONSOLE_MAX = "1MB"

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
    """LXC config lines for a size (and the pids cap every instance gets), for this machine's cgroups."""
    v1 = Path("/sys/fs/cgroup/pids").is_dir() or Path("/sys/fs/cgroup/memory").is_dir()
    lines = [f"lxc.cgroup.pids.max = {PIDS_MAX}" if v1 else f"lxc.cgroup2.pids.max = {PIDS_MAX}"]
    if size is None:
        return lines
    memory, shares = SIZES[size]
    if v1:  # v1 (or hybrid) controllers
        return [*lines, f"lxc.cgroup.memory.limit_in_bytes = {memory}", f"lxc.cgroup.cpu.shares = {shares}"]
    weight = max(1, shares * 100 // 1024)
    return [*lines, f"lxc.cgroup2.memory.max = {memory}", f"lxc.cgroup2.cpu.weight = {weight}"]


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
        # Unprivileged: root inside is uid ID_BASE here, with no power over
        # this machine's files, /proc/sys, kernel log or cgroups. The base
        # image is owned accordingly (image.shift_ids).
        f"lxc.idmap = u 0 {ID_BASE} {ID_COUNT}",
        f"lxc.idmap = g 0 {ID_BASE} {ID_COUNT}",
        # Read-only /proc/sys and /sys; systemd gets its own cgroup subtree.
        "lxc.mount.auto =",
        "lxc.mount.auto = proc:mixed sys:ro cgroup:mixed",
        # Namespaced capabilities are harmless to this machine; drop the
        # rest of the ones that reach the kernel itself anyway.
        "lxc.cap.drop = sys_module sys_rawio sys_time syslog mac_admin mac_override",
        # An overlay of the base image and delta0/, mounted by cloudinitd
        # before each start (rootfs.py says why not by LXC).
        f"# lower layer: {lower}",
        f"lxc.rootfs.path = dir:{directory / rootfs.ROOTFS}",
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
        f"lxc.console.size = {CONSOLE_MAX}",
        "lxc.console.rotate = 1",
        # FUSE for sshfs: common.conf already allows the device (c 10:229).
        f"lxc.mount.entry = {directory / FUSE_NODE} dev/fuse none bind,create=file 0 0",
        *limits,
        "",
    ]
    return "\n".join(lines)


# Files this machine writes into an instance belong to the instance's root.
GUEST_ROOT = (ID_BASE, ID_BASE)


def make_upper(directory: Path, layers: Path) -> Path:
    """The overlay upper layer in `layers` (the instance's disk), owned like the base
    image's root directory, its work dir, and the container's /dev/fuse node."""
    upper = layers / UPPER
    upper.mkdir(mode=0o755, exist_ok=True)
    os.chown(upper, *GUEST_ROOT)
    upper.chmod(0o755)
    (layers / rootfs.WORK).mkdir(mode=0o700, exist_ok=True)
    make_fuse_device(directory)
    return upper


def upper_dir(directory: Path) -> Path:
    """A container's upper layer, its disk mounted first (a stopped one's may not be)."""
    return disk.layers(directory) / UPPER


def make_fuse_device(directory: Path) -> Path:
    """A /dev/fuse node of the container's own, owned by its root.

    The machine's /dev/fuse may be root-only (0600); opening it up to every
    user would be a machine-wide change, so each container gets a node that
    only its root can open, bind-mounted as its /dev/fuse.
    """
    node = directory / FUSE_NODE
    if not node.exists():
        os.mknod(node, 0o600 | stat.S_IFCHR, os.makedev(10, 229))
    os.chown(node, *GUEST_ROOT)
    node.chmod(0o600)
    return node


def write_guest_file(upper: Path, lower: Path, rel: str, text: str | bytes,
                     mode: int = 0o644) -> None:
    """Write a file into a stopped instance's disk (its overlay upper layer).

    Missing parent directories take the base image's mode and owner (an
    overlay directory shows the upper layer's attributes, so a 0755 /root
    made here would override the base's 0700). Nothing the guest left in its
    upper layer (a symlink, a mount point) is followed.
    """
    parent = str(PurePosixPath("/", rel).parent)
    with guestfs.opened_root(upper) as root, guestfs.opened_root(lower) as like:
        if parent != "/":
            guestfs.make_dirs(root, parent, like=like, owner=GUEST_ROOT)
        data = text.encode() if isinstance(text, str) else text
        guestfs.write_file(root, rel, data, mode, GUEST_ROOT)


# Runs as the container's root, inside it: `$1` the path, `$2` the octal mode,
# the content on stdin. A temporary name of mktemp's choosing, then a rename.
_WRITE_INSIDE = 'set -e; umask 077; t=$(mktemp "$1.XXXXXX"); cat > "$t"; chmod "$2" "$t"; mv -f "$t" "$1"'


def write_running_file(name: str, lxcpath: Path, rel: str, text: str, mode: int = 0o644) -> None:
    """Write a file inside a running container, from inside it (lxc-attach).

    The writer is the container's own root in its own namespaces, so any
    symlink or mount the guest planted resolves inside the guest and
    nothing on this machine is reachable. (This machine's root cannot create
    files in the container's overlay anyway: it is mounted in the
    container's user namespace, where uid 0 here has no mapping.)
    """
    path = str(PurePosixPath("/", rel))
    proc = lxc.attach(name, lxcpath, ["/bin/sh", "-c", _WRITE_INSIDE, "sh", path, f"{mode:o}"], input=text)
    if proc.returncode != 0:
        raise OSError(errno.EIO, f"writing {path} in {name} failed: {proc.stderr.strip()[-300:]}")
