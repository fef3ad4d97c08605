"""The home share's confinement: a chroot that holds the shared folder and nothing else.

sshd's `ChrootDirectory` wants a root-owned path that nobody else can write,
and a home folder is owned by its user. So the share's sshd starts in a
private mount namespace (`unshare --mount --propagation private`) where:

- a small read-only tmpfs, root-owned 0755, covers the jail directory
  `/run/cloudinitd-share/<id>` (the chroot);
- inside it, the shared folder is bind-mounted at its own path (the VM asks
  for `/home/alice`, as it would without the chroot), so nothing but the
  folder and its empty parent directories exist in the VM's view;
- `--read-only` also makes that bind mount read-only (internal-sftp's `-R`
  refuses writes first; the mount is a second lock).

The mounts exist only in that namespace: nothing on this machine sees them,
and they vanish with the share's last process. sshd chroots each session
there before it drops to the shared user, so `..`, absolute paths and
symlinks (resolved by the kernel inside the chroot) all end inside the jail.
Only root can chroot: a cloudinitd that does not run as root gets no jail
(`can_confine()` is False) and its share reaches what its user can.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
from pathlib import Path

from cloudinitd.errors import CloudinitdError

JAIL_ROOT = Path("/run/cloudinitd-share")

# Runs inside the new mount namespace as root, then becomes sshd:
#   $1 jail  $2 path of the folder inside the jail  $3 the folder  $4 rw|ro
# The jail's tmpfs ends read-only: even a session running as root can write
# nothing but the shared folder.
SETUP = r"""set -eu
umask 022
mount -t tmpfs -o mode=0755,size=256k,nr_inodes=256,nosuid,nodev,noexec cloudinitd-share "$1"
mkdir -p "$1$2"
mount --bind "$3" "$1$2"
mount -o "remount,bind,$4,nosuid,nodev" "$1$2"
mount -o remount,ro "$1"
shift 4
exec "$@"
"""


class HomeShareError(CloudinitdError):
    """The home share could not be started (no sshd, address not ours, no jail, ...)."""


def can_confine() -> bool:
    """Only root can chroot and bind-mount: sshd must start as root for the jail."""
    return os.geteuid() == 0


def jail_dir(run_dir: Path) -> Path:
    """The run's chroot (an empty mount point on this machine; full only in the namespace).

    Named by a digest of the run's folder: two CLOUDINITD_HOMEs may each have
    a run `sshfs-vm-1`.
    """
    digest = hashlib.sha256(str(Path(run_dir).resolve()).encode()).hexdigest()[:16]
    return JAIL_ROOT / digest


def _root_owned_dir(path: Path) -> None:
    """Make `path` a root-owned 0755 folder, or fail if something else squats it.

    sshd checks every component of ChrootDirectory the same way; failing here
    gives a clearer message than sshd's log.
    """
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o755)
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0:
        raise HomeShareError(f"home share: {path} is not a folder owned by root; remove it")
    if stat.S_IMODE(st.st_mode) != 0o755:
        path.chmod(0o755)


def prepare(run_dir: Path) -> Path:
    """Create the (empty) jail mount point for the run; return its path."""
    _root_owned_dir(JAIL_ROOT)
    jail = jail_dir(run_dir)
    _root_owned_dir(jail)
    return jail


def inner_path(shared_dir: str) -> str:
    """Where the shared folder appears inside the jail: at its own absolute path."""
    path = os.path.normpath(os.path.abspath(shared_dir))
    if path == "/":
        raise HomeShareError("home share: refusing to share / (all of this machine): pick a folder")
    return path


def wrap(argv: list[str], run_dir: Path, shared_dir: str, read_only: bool) -> list[str]:
    """`argv` (sshd) started inside a private mount namespace holding the jail."""
    unshare = shutil.which("unshare") or "/usr/bin/unshare"
    return [
        unshare,
        "--mount",
        "--propagation",
        "private",
        "--",
        "/bin/sh",
        "-c",
        SETUP,
        "cloudinitd-share",
        str(jail_dir(run_dir)),
        inner_path(shared_dir),
        os.path.realpath(shared_dir),
        "ro" if read_only else "rw",
        *argv,
    ]


def release(run_dir: Path) -> None:
    """Remove the run's empty mount point (the namespace and its mounts are gone with sshd)."""
    # JAIL_ROOT stays: removing it could race with another run's prepare().
    with contextlib.suppress(OSError):
        jail_dir(run_dir).rmdir()
