"""Lock files held with flock(2): one holder at a time across threads and processes.

flock, not lockf/fcntl locks: a flock belongs to the open file, so two threads of one
process that each open the file exclude each other too, and the kernel drops it when
the holder dies (no stale lock after a crash). The lock is released explicitly before
the file is closed, so a child that inherited the descriptor cannot keep it held.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path


def _open(path: Path, create: bool) -> int:
    if create:
        # 0600: lock files live in private folders; nobody else has a reason to open one.
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    # An existing file locked for itself (a disk image): opened read-only, never created.
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC)


@contextlib.contextmanager
def exclusive(path: Path, *, create: bool = True) -> Iterator[None]:
    """Hold an exclusive lock on `path` for the block, waiting as long as it takes.

    `create=False` locks an existing file (FileNotFoundError if it is not there).
    """
    fd = _open(Path(path), create)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextlib.contextmanager
def try_exclusive(path: Path) -> Iterator[bool]:
    """Take the lock on `path` if nobody holds it: yields True (held for the block) or
    False at once (someone else has it; nothing is held)."""
    fd = _open(Path(path), True)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
