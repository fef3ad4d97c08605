"""Files inside an instance's filesystem, opened without following the guest's paths.

Root inside an instance controls every name in its filesystem: a symlink
`/etc/hosts.cidtmp -> /etc/shadow`, or a mount over `/etc`, would make a
plain `open()` by this machine's root write a host file. Every lookup here
goes through openat2(2) with RESOLVE_IN_ROOT (absolute names and `..` stay
inside the instance's root), RESOLVE_NO_SYMLINKS and RESOLVE_NO_MAGICLINKS
(no symlink is followed at all) and RESOLVE_NO_XDEV (no mount of the guest
is crossed). Files are created with O_EXCL under a temporary name, owned by
the instance's root, and renamed into place (a rename replaces a symlink,
never follows it).

Python has no openat2 wrapper, so it is called through ctypes (syscall 437
on x86-64 and arm64, Linux 5.6+).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

SYS_OPENAT2 = 437
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_IN_ROOT = 0x10
RESOLVE_GUEST = RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV
# The guest's links followed as the guest would, but inside its root only (an
# absolute link or `..` never leaves it), no magic link, no mount crossed: for
# a copy of the guest no one else writes (a saved image), never a live guest.
RESOLVE_IN_COPY = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV


class _OpenHow(ctypes.Structure):
    _fields_ = [
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    ]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class GuestPathError(OSError):
    """A name inside the instance is a symlink, crosses a mount, or is otherwise unsafe."""


def openat2(dirfd: int, path: str, flags: int, mode: int = 0, resolve: int = RESOLVE_GUEST) -> int:
    """openat2(2): open `path` relative to `dirfd` with the given RESOLVE_* flags."""
    how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    fd = _libc.syscall(
        SYS_OPENAT2,
        ctypes.c_int(dirfd),
        ctypes.c_char_p(os.fsencode(path)),
        ctypes.byref(how),
        ctypes.c_size_t(ctypes.sizeof(how)),
    )
    if fd < 0:
        err = ctypes.get_errno()
        if err in (errno.ELOOP, errno.EXDEV):
            raise GuestPathError(err, f"refusing a symlink or mount inside the instance: {path}")
        raise OSError(err, os.strerror(err), path)
    return fd


@contextlib.contextmanager
def opened_root(root: Path | str) -> Iterator[int]:
    """An O_PATH descriptor of the instance's root directory (a path of ours, trusted)."""
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield fd
    finally:
        os.close(fd)


def _rel(path: str) -> PurePosixPath:
    rel = PurePosixPath("/", path).relative_to("/")
    if not rel.parts or ".." in rel.parts:
        raise GuestPathError(errno.EINVAL, f"not a plain path inside the instance: {path}")
    return rel


@contextlib.contextmanager
def _dir(root_fd: int, rel: PurePosixPath, resolve: int = RESOLVE_GUEST) -> Iterator[int]:
    fd = openat2(root_fd, str(rel) or ".", os.O_PATH | os.O_DIRECTORY, resolve=resolve)
    try:
        yield fd
    finally:
        os.close(fd)


def _attributes(like: int, rel: PurePosixPath) -> tuple[int, int, int] | None:
    """(mode, uid, gid) of directory `rel` under root `like`, or None when it has none."""
    try:
        fd = openat2(like, str(rel), os.O_PATH | os.O_DIRECTORY)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    return stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid


def make_dirs(
    root_fd: int, path: str, like: int | None = None, owner: tuple[int, int] = (0, 0)
) -> None:
    """Create the directories of `path` (itself included) that are missing.

    A new directory copies mode and owner from the same path under the root
    `like` (e.g. the base image under an overlay's upper layer, whose
    attributes the overlay shows), else gets 0755 and `owner`. An existing
    name must be a real directory.
    """
    current = PurePosixPath()
    for part in _rel(path).parts:
        with _dir(root_fd, current) as parent:
            try:
                os.mkdir(part, 0o700, dir_fd=parent)
                made = True
            except FileExistsError:
                made = False
        current /= part
        fd = openat2(root_fd, str(current), os.O_RDONLY | os.O_DIRECTORY)
        try:
            if made:
                attrs = _attributes(like, current) if like is not None else None
                mode, uid, gid = attrs or (0o755, *owner)
                os.fchown(fd, uid, gid)
                os.fchmod(fd, mode)
        finally:
            os.close(fd)


def write_file(
    root_fd: int,
    path: str,
    data: bytes,
    mode: int = 0o644,
    owner: tuple[int, int] = (0, 0),
) -> None:
    """Atomically replace `path` inside the root with `data`, owned by `owner`.

    The parent directory must exist. Raises GuestPathError when any name on
    the way is a symlink or crosses a mount.
    """
    rel = _rel(path)
    with _dir(root_fd, rel.parent) as parent:
        tmp = f".{rel.name}.cid{secrets.token_hex(4)}"
        fd = os.open(
            tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=parent
        )
        try:
            try:
                os.fchown(fd, *owner)
                os.write(fd, data)
                os.fchmod(fd, mode)
            finally:
                os.close(fd)
            os.rename(tmp, rel.name, src_dir_fd=parent, dst_dir_fd=parent)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=parent)
            raise


def read_file(root_fd: int, path: str, limit: int = 1 << 20,
              resolve: int = RESOLVE_GUEST) -> bytes:
    """The first `limit` bytes of a regular file inside the root (never a device or fifo)."""
    nofollow = os.O_NOFOLLOW if resolve & RESOLVE_NO_SYMLINKS else 0
    fd = openat2(root_fd, str(_rel(path)), os.O_RDONLY | os.O_NONBLOCK | nofollow,
                 resolve=resolve)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise GuestPathError(errno.EINVAL, f"not a regular file inside the instance: {path}")
        chunks, size = [], 0
        while size < limit:
            chunk = os.read(fd, limit - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def list_dir(root_fd: int, path: str, resolve: int = RESOLVE_GUEST) -> list[str]:
    """The names in directory `path` inside the root ([] when it is not a directory)."""
    try:
        fd = openat2(root_fd, str(_rel(path)), os.O_RDONLY | os.O_DIRECTORY, resolve=resolve)
    except OSError:
        return []
    try:
        return os.listdir(fd)
    finally:
        os.close(fd)


def remove_file(root_fd: int, path: str, resolve: int = RESOLVE_GUEST) -> bool:
    """Remove the file (or link) `path` inside the root; False when it is not there.

    The parent is reached without following any link or mount (or, with
    RESOLVE_IN_COPY, following links inside the root only), and unlink never
    follows the last name: a link is removed, not what it points to.
    """
    rel = _rel(path)
    try:
        with _dir(root_fd, rel.parent, resolve) as parent:
            os.unlink(rel.name, dir_fd=parent)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError, GuestPathError):
        return False
    return True
