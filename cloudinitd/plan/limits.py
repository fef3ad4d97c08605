"""How much one plan may ask of this machine (README "Limits").

A plan may come from someone else (a shared folder, the network service), so
the loader refuses input that would exhaust memory or time before it is
parsed or expanded: file sizes here, nesting and alias expansion in
`yamlpos`, template work in `cloudinitd.sandbox`, instance counts in the loader.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

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


def file_problem(path: Path, max_bytes: int | None = None) -> str | None:
    """Why `path` cannot serve as one of a plan's files, or None (a regular file).

    From its metadata only, before anything opens it: opening a FIFO waits for
    a writer, a device may act on being opened and /dev/zero never ends, and a
    name the file system refuses (too long, a loop of links, a NUL byte) is an
    answer here, not a traceback. `NOT_FOUND` when nothing is there.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return NOT_FOUND
    except (OSError, ValueError) as exc:
        return f"cannot be used: {getattr(exc, 'strerror', None) or exc}"
    if stat.S_ISDIR(info.st_mode):
        return "is a folder, not a file"
    if not stat.S_ISREG(info.st_mode):
        return "is not a regular file"
    if max_bytes is not None and info.st_size > max_bytes:
        return f"is larger than the limit of {max_bytes // 1024} KiB"
    return None


def said(problem: str) -> str:
    """`file_problem`'s answer after "cannot read X: "."""
    return "no such file" if problem == NOT_FOUND else f"it {problem}"


def read_text(path: Path, limit: int, file: str) -> str:
    """A plan or script file as text: refused (PlanError) when too large or not UTF-8."""
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise PlanError(f"file is larger than the limit of {limit // 1024} KiB", file, 1)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _decode_error(data, exc, file) from None
