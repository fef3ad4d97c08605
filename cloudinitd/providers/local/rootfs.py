"""A container's root filesystem: an overlay that this machine mounts for it.

The overlay (lower: the cached, id-shifted base image; upper: the
instance's own `delta0/`, on its size-capped disk, disk.py) is mounted here, by root, at `<container>/rootfs`,
and LXC is given that directory. Measured on kernel 6.18 with LXC 5.0.2:
when LXC mounts the overlay itself inside the container's user namespace,
overlayfs refuses `redirect_dir=on` there, and renaming any directory fails
with EXDEV, which breaks dpkg (`apt-get install` fails with "Invalid
cross-device link"). Mounted from this machine's namespace it behaves as for
a privileged container, while the container's root stays unprivileged: it
cannot set the trusted.overlay.* attributes that steer overlayfs, and every
file it makes is owned by its mapped uid.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from cloudinitd.errors import ProviderError
from cloudinitd.providers.local import disk

ROOTFS = "rootfs"
UPPER = "delta0"
WORK = "work"


def path(directory: Path) -> Path:
    return directory / ROOTFS


def mounted(directory: Path) -> bool:
    return os.path.ismount(path(directory))


def mount(directory: Path, lower: Path) -> Path:
    """Mount the container's overlay at <directory>/rootfs (remounting a stale one)."""
    target = path(directory)
    if mounted(directory):
        # Left from a run that ended without us; remount so edits made to
        # the upper layer since (e.g. /etc/hosts) are seen.
        unmount(directory)
    target.mkdir(mode=0o755, exist_ok=True)
    below = disk.layers(directory)  # the instance's disk first, then the overlay on it
    layers = {"lowerdir": lower, "upperdir": below / UPPER, "workdir": below / WORK}
    for key, layer in layers.items():
        if any(c in str(layer) for c in ",:\\"):
            raise ProviderError(f"overlay {key} path {layer} contains ',', ':' or '\\'")
    options = ",".join(f"{k}={v}" for k, v in layers.items())
    proc = subprocess.run(
        ["mount", "-t", "overlay", "-o", f"{options},nodev", "overlay", str(target)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise ProviderError(
            f"mounting the root filesystem of {directory.name}: {proc.stderr.strip()}"
        )
    return target


def unmount(directory: Path) -> None:
    """Unmount the overlay if mounted (lazily: a dying container may still hold it).

    The instance's disk below stays mounted (disk.unmount, after this).
    """
    if not mounted(directory):
        return
    proc = subprocess.run(["umount", "-l", str(path(directory))], capture_output=True, text=True)
    if proc.returncode != 0 and mounted(directory):
        raise ProviderError(
            f"unmounting the root filesystem of {directory.name}: {proc.stderr.strip()}"
        )
