"""Private files: mode 0600 (or the given mode) from their first byte, replaced atomically.

Why not `write_text` then `chmod`: between the two, a key or a secret would be readable
under the umask's mode; and a reader must never see half a file, so it is written to a
temporary name beside it and renamed over it.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path


def write_private(path: Path, data: bytes | str, *, mode: int = 0o600,
                  sync: bool = False) -> None:
    """Write `data` to `path` atomically, created with `mode` (default 0600).

    `sync=True` flushes it to disk before the rename (a file whose loss after a crash
    would lose data that exists nowhere else, e.g. users' secret keys).
    """
    path = Path(path)
    # One temporary name per process and thread: concurrent writers never share one.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()  # left by a writer of this pid that crashed
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)  # the umask may have taken bits `mode` asks for
            fh.write(data.encode() if isinstance(data, str) else data)
            if sync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def create_private(path: Path) -> None:
    """Make sure `path` exists and is 0600 (before a library such as SQLite opens it
    under the umask's mode); an existing file keeps its content."""
    os.close(os.open(path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600))
    os.chmod(path, 0o600)
