"""How much one plan may ask of this machine (README "Limits").

A plan may come from someone else (a shared folder, the network service), so
the loader refuses input that would exhaust memory or time before it is
parsed or expanded: file sizes here, nesting and alias expansion in
`yamlpos`, template work in `cloudinitd.sandbox`, instance counts in the loader.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cloudinitd.errors import PlanError, UsageError
from cloudinitd.settings import settings

MAX_PLAN_BYTES = 256 * 1024
MAX_SCRIPT_BYTES = 512 * 1024
# An SSH private key file: OpenSSH's largest (RSA, 16384 bits) is ~13 KiB.
MAX_KEY_BYTES = 64 * 1024
MAX_INSTANCES_PER_SERVICE = 1000
MAX_INSTANCES_PER_RUN = 2000
# Raises both instance limits for every command (`--max-instances` does it for one).
LIMIT_ENV = "CLOUDINITD_MAX_INSTANCES"


@dataclass(frozen=True)
class Limits:
    per_service: int = MAX_INSTANCES_PER_SERVICE
    per_run: int = MAX_INSTANCES_PER_RUN
    plan_bytes: int = MAX_PLAN_BYTES
    script_bytes: int = MAX_SCRIPT_BYTES

    @classmethod
    def from_env(cls, max_instances: int | None = None) -> Limits:
        """Defaults, raised by `--max-instances N` or $CLOUDINITD_MAX_INSTANCES (both limits)."""
        if max_instances is None:
            text = settings().max_instances or ""
            if text:
                if not text.isdigit() or len(text) > 9:
                    raise UsageError(f"${LIMIT_ENV} must be a whole number, got {text[:40]!r}")
                max_instances = int(text)
        if max_instances is None:
            return cls()
        return cls(per_service=max_instances, per_run=max_instances)


DEFAULT_LIMITS = Limits()


def _decode_error(data: bytes, exc: UnicodeDecodeError, file: str) -> PlanError:
    start = exc.start
    line = data.count(b"\n", 0, start) + 1
    line_start = data.rfind(b"\n", 0, start) + 1
    column = len(data[line_start:start].decode("utf-8", errors="replace")) + 1
    return PlanError(
        f"not UTF-8: byte 0x{data[start]:02x} at line {line}, column {column}", file, line
    )


NOT_FOUND = "not found"


def _os_problem(exc: OSError | ValueError) -> str:
    if isinstance(exc, FileNotFoundError):
        return NOT_FOUND
    return f"cannot be used: {getattr(exc, 'strerror', None) or exc}"


def _kind_problem(info: os.stat_result, max_bytes: int | None) -> str | None:
    if stat.S_ISDIR(info.st_mode):
        return "is a folder, not a file"
    if not stat.S_ISREG(info.st_mode):
        return "is not a regular file"
    if max_bytes is not None and info.st_size > max_bytes:
        return _too_big(max_bytes)
    return None


def _too_big(max_bytes: int) -> str:
    return f"is larger than the limit of {max_bytes // 1024} KiB"


def file_problem(path: Path, max_bytes: int | None = None) -> str | None:
    """Why `path` cannot serve as one of a plan's files, or None (a regular file).

    From its metadata only, without opening it: for a name that is only
    checked (an `ssh_key` at load time, a `files:` entry). What is read goes
    through `open_checked`, which checks the opened file again. A name the
    file system refuses (too long, a loop of links, a NUL byte) is an answer
    here, not a traceback. `NOT_FOUND` when nothing is there.
    """
    try:
        info = os.stat(path)
    except (OSError, ValueError) as exc:
        return _os_problem(exc)
    return _kind_problem(info, max_bytes)


def said(problem: str) -> str:
    """`file_problem`'s answer after "cannot read X: "."""
    return "no such file" if problem == NOT_FOUND else f"it {problem}"


class FileRefused(OSError):
    """A file a plan names that cannot be read: `problem` is `file_problem`'s answer.

    An OSError whose `strerror` is already the words to show after "cannot
    read X: ", so callers that report an OSError's strerror say it well."""

    def __init__(self, problem: str) -> None:
        super().__init__(said(problem))
        self.problem = problem
        self.strerror = said(problem)

    @property
    def too_big(self) -> bool:
        return self.problem.startswith("is larger than")


class CheckedFile:
    """A file `open_checked` opened: reads stop with FileRefused past `max_bytes`
    (a regular file may still grow while it is read)."""

    def __init__(self, f: BinaryIO, max_bytes: int | None) -> None:
        self._f = f
        self._max = max_bytes
        self._left = max_bytes or 0  # bytes still allowed (with a limit)

    def fileno(self) -> int:
        return self._f.fileno()

    def read(self, size: int = -1) -> bytes:
        if self._max is None:
            return self._f.read(size)
        want = self._left + 1 if size < 0 else min(size, self._left + 1)
        data = self._f.read(want)
        self._left -= len(data)
        if self._left < 0:
            raise FileRefused(_too_big(self._max))
        return data


@contextlib.contextmanager
def open_checked(path: Path, max_bytes: int | None = None) -> Iterator[CheckedFile]:
    """`path` opened for reading, once it is known to be a regular file of at most
    `max_bytes`. Raises FileRefused (also from a read past `max_bytes`).

    Checked by name first, so a device is not opened at all (opening one may
    act), then again on the opened file: the name may have been swapped for a
    FIFO or /dev/zero in between. O_NONBLOCK keeps the open of a FIFO from
    waiting for a writer; regular files ignore it.
    """
    problem = file_problem(path, max_bytes)
    if problem:
        raise FileRefused(problem)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except (OSError, ValueError) as exc:
        raise FileRefused(_os_problem(exc)) from None
    try:
        problem = _kind_problem(os.fstat(fd), max_bytes)
        if problem:
            raise FileRefused(problem)
        f = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with f:
        yield CheckedFile(f, max_bytes)


def read_checked(path: Path, max_bytes: int) -> bytes:
    """A file a plan names, whole: a regular file of at most `max_bytes` (else FileRefused).

    Checked on the opened file (`open_checked`), and never more than
    `max_bytes` + 1 bytes read, however the file changes meanwhile."""
    with open_checked(path, max_bytes) as f:
        return f.read()


def copy_checked(source: Path, target: Path, max_bytes: int) -> int:
    """Copy a file a plan names to `target` through `open_checked` (at most `max_bytes`,
    else FileRefused, with part of it written); returns the source's st_mode, from the
    file that was copied."""
    with open_checked(source, max_bytes) as f, open(target, "wb") as out:
        shutil.copyfileobj(f, out)  # type: ignore[misc]
        return os.fstat(f.fileno()).st_mode


def read_text(path: Path, limit: int, file: str) -> str:
    """A plan or script file as text, read by `read_checked`.

    Too large: PlanError at `file`:1; not UTF-8: PlanError at its line and
    column. Any other refusal is the FileRefused (an OSError) for the caller
    to place.
    """
    try:
        data = read_checked(path, limit)
    except FileRefused as exc:
        if exc.too_big:
            raise PlanError(f"file {exc.problem}", file, 1) from None
        raise
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _decode_error(data, exc, file) from None
