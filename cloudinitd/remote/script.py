"""Pure pieces of running a script remotely: interpreter, command line, export parsing, log.

Kept apart from the SSH code in `steps` so they can be read and tested alone.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cloudinitd.errors import RemoteError

TAIL_LINES = 20
KILL_AFTER = 5  # seconds between the remote timeout's TERM and KILL
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_EXPORT_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")

# --- pure helpers -------------------------------------------------------------------


def interpreter(script: str) -> list[str]:
    """argv prefix that runs `script`: its shebang line split on blanks, else ["sh"]."""
    first = script.split("\n", 1)[0].rstrip("\r")
    if first.startswith("#!"):
        argv = first[2:].split()
        if argv:
            return argv
    return ["sh"]


def step_env(
    run: str, service: str, index: int, step: str, export_path: str, env: dict[str, str]
) -> dict[str, str]:
    out = {str(k): str(v) for k, v in env.items()}
    out.update(
        CLOUDINITD_RUN=run,
        CLOUDINITD_SERVICE=service,
        CLOUDINITD_INDEX=str(index),
        CLOUDINITD_STEP=step,
        CLOUDINITD_EXPORT=export_path,
    )
    return out


def build_command(
    workdir: str, script_path: str, argv: list[str], env: dict[str, str], timeout: float, sudo: bool
) -> str:
    """The shell command line that runs one step (see the module doc for why so)."""
    for key in env:
        if not _ENV_KEY.fullmatch(key):  # fullmatch: `$` alone lets a trailing newline in
            raise ValueError(f"invalid environment variable name {key!r}")
    assigns = " ".join(shlex.quote(f"{k}={v}") for k, v in env.items())
    run = " ".join(shlex.quote(a) for a in [*argv, script_path])
    limit = max(1, math.ceil(timeout))
    return (
        f"cd {shlex.quote(workdir)} && rm -f export && echo $$ > pid && "
        f"if command -v timeout >/dev/null 2>&1; then T='timeout -k {KILL_AFTER} {limit}'; "
        f"else T=; fi && exec {'sudo -n ' if sudo else ''}env {assigns} $T {run} </dev/null 2>&1"
    )


def parse_export(text: str, where: str) -> dict[str, Any]:
    """An export file: a JSON object (values kept as JSON gives them) or `key=value` lines."""
    stripped = text.strip()
    if not stripped:
        return {}
    if stripped.startswith(("{", "[")):
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError as e:
            raise ValueError(
                f"malformed export file {where}: invalid JSON at line {e.lineno}: {e.msg}"
            ) from None
        if not isinstance(data, dict):
            raise ValueError(f"malformed export file {where}: JSON must be an object")
        return data
    out: dict[str, Any] = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, eq, value = line.partition("=")
        key = key.strip()
        if not eq or not _EXPORT_KEY.match(key):
            raise ValueError(
                f"malformed export file {where}: line {n} is not key=value: {line[:60]!r}"
            )
        out[key] = value.strip()
    return out


def check_name(what: str, value: str, service: str, step: str) -> None:
    if not NAME.fullmatch(value):
        raise RemoteError(service, step, f"unsafe {what} name for a remote path: {value!r}")


# --- logging ------------------------------------------------------------------------


class StepLog:
    """Appends a step's output to its log file (0600) and keeps the last lines."""

    def __init__(self, path: Path):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.fchmod(fd, 0o600)
        self.f = os.fdopen(fd, "ab", buffering=0)
        self.recent = bytearray()

    def header(self, text: str) -> None:
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.f.write(f"=== {stamp} {text} ===\n".encode())

    def write(self, data: bytes) -> None:
        self.f.write(data)
        self.recent += data
        if len(self.recent) > 32768:
            del self.recent[:-16384]

    def note(self, text: str) -> None:
        self.f.write(f"--- {text} ---\n".encode())

    def tail(self) -> str:
        lines = self.recent.decode(errors="replace").splitlines()
        return "\n".join(lines[-TAIL_LINES:])

    def close(self) -> None:
        self.f.close()
