"""An instance's own disk: a size-capped filesystem under its overlay's upper layer.

Everything a container writes lands in its overlay's upper layer. On this
machine's filesystem that layer could grow until the disk is full, so each
instance gets its own filesystem instead:

    <container>/disk.img   a sparse file of the cap's size (0600, root's),
                           formatted ext4 (no blocks reserved for root)
    <container>/disk/      where it is loop-mounted (nodev, nosuid, discard);
                           it holds delta0/ (the upper layer) and work/

Writing past the cap fails inside the container with ENOSPC ("No space
left on device"); this machine only ever gives the instance what it has
really written (the file is sparse and `discard` returns what the guest
deletes). The cap is the cloud entry's `disk:` option, 8 GiB by default,
from 256 MiB to 1 TiB (bytesize.DISK_*, checked when the entry is loaded).
It bounds one instance: caps are not reserved, so many
instances together may still claim more than this machine has.

Measured here (kernel 6.18, e2fsprogs 1.47, 2 busy cores): making,
formatting and mounting an 8 GiB image takes 50-100 ms and allocates about
4 MiB (lazy inode tables and journal; `noinit_itable` keeps the kernel
from zeroing the tables later).
Project quotas would cap a directory without a loop device, but need a
filesystem formatted and mounted for them (this machine's root is not).

Order: the disk is mounted before the overlay (rootfs.mount asks for it)
and unmounted after it (lxc.destroy). `mount -o loop` sets the loop
device to detach itself when the filesystem is released, and `release`
detaches any loop device left on the image anyway, so none is leaked.
Mount namespaces made while the disk is mounted (other containers, the
home share's jail) hold copies of its mount; lxc.destroy removing the
mount point detaches those too (the kernel does, since Linux 3.18).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

from cloudinitd.errors import ProviderError
from cloudinitd.host import locks

IMAGE = "disk.img"
MOUNT = "disk"

MKFS = [
    "mkfs.ext4", "-q", "-F", "-m", "0", "-L", "cloudinitd",
    "-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard",
]  # fmt: skip
MOUNT_OPTIONS = "loop,nodev,nosuid,noinit_itable,discard"


def has_disk(directory: Path) -> bool:
    """Made with its own disk (containers made before disks keep their layers in their folder)."""
    return (directory / IMAGE).exists()


def mounted(directory: Path) -> bool:
    return os.path.ismount(directory / MOUNT)


def _run(cmd: list[str], what: str) -> None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        raise ProviderError(f"{cmd[0]} not found: apt-get install e2fsprogs util-linux") from None
    if proc.returncode != 0:
        raise ProviderError(f"{what}: {proc.stderr.strip()[-300:]}")


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """One mounter at a time per image: two loop devices on one file would corrupt it."""
    with locks.exclusive(directory / IMAGE, create=False):
        yield


def create(directory: Path, size: int) -> Path:
    """Make, format and mount the instance's disk; returns where its layers go."""
    image = directory / IMAGE
    fd = os.open(image, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.ftruncate(fd, size)
    finally:
        os.close(fd)
    _run([*MKFS, str(image)], f"formatting the disk of {directory.name}")
    return layers(directory)


def layers(directory: Path) -> Path:
    """The folder holding the overlay's upper and work directories, mounted if need be.

    Every reader and writer of the upper layer comes through here, so none
    ever writes into the empty mount point (on this machine's disk) of a
    disk that is not mounted, e.g. after a reboot.
    """
    if not has_disk(directory):
        return directory
    target = directory / MOUNT
    with _locked(directory):
        if not mounted(directory):
            target.mkdir(mode=0o700, exist_ok=True)
            _run(
                ["mount", "-t", "ext4", "-o", MOUNT_OPTIONS, str(directory / IMAGE), str(target)],
                f"mounting the disk of {directory.name}",
            )
    return target


def unmount(directory: Path) -> None:
    """Unmount the disk (after the overlay above it), lazily: a dying container may still hold it.

    The loop device goes with the filesystem's last user.
    """
    if mounted(directory):
        proc = subprocess.run(
            ["umount", "-l", str(directory / MOUNT)], capture_output=True, text=True
        )
        if proc.returncode != 0 and mounted(directory):
            raise ProviderError(f"unmounting the disk of {directory.name}: {proc.stderr.strip()}")
    release(directory)


def loop_devices(directory: Path) -> list[str]:
    """Loop devices backed by this instance's image."""
    image = directory / IMAGE
    if not image.exists():
        return []
    proc = subprocess.run(
        ["losetup", "-n", "-O", "NAME", "-j", str(image)], capture_output=True, text=True
    )
    return proc.stdout.split()


def release(directory: Path) -> None:
    """Detach loop devices left on the image (a mount killed half way).

    One still in use is only marked to detach itself when released.
    """
    for device in loop_devices(directory):
        subprocess.run(["losetup", "-d", device], capture_output=True)

