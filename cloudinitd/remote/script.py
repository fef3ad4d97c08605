"""Pure pieces of running a script remotely: interpreter, command line, export parsing, log.

Kept apart from the SSH code in `steps` so they can be read and tested alone.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
from collections.abc import Sequence
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


# Linux refuses (E2BIG, "Argument list too long") any single environment string
# of MAX_ARG_STRLEN (32 pages) or more, whatever the total: such a value can
# reach a script only as a variable of the shell that reads the env file.
ENV_STRING_MAX = 32 * 4096
SHELLS = frozenset({"sh", "bash", "dash", "ash", "ksh", "mksh", "zsh", "busybox"})


def is_shell(argv: list[str]) -> bool:
    """Whether the interpreter is a Bourne-style shell (`#!/bin/sh`, `#!/usr/bin/env bash`)."""
    prog = os.path.basename(argv[0])
    if prog == "env":
        rest = [a for a in argv[1:] if not a.startswith("-") and "=" not in a]
        prog = os.path.basename(rest[0]) if rest else ""
    return prog in SHELLS


def check_env(env: dict[str, str]) -> None:
    """Names a shell can set and values a process can hold; ValueError says which is not."""
    for key, value in env.items():
        if not _ENV_KEY.fullmatch(key):  # fullmatch: `$` alone lets a trailing newline in
            raise ValueError(f"invalid environment variable name {key!r}")
        if "\0" in value:
            raise ValueError(f"env value {key} contains a NUL byte (at character"
                             f" {value.index(chr(0))}), which no environment or shell can hold")


def env_file(env: dict[str, str], shell: bool) -> str:
    """The step's environment as a file the shell sources (`. FILE`).

    Values travel in this file, never on the command line, so their size is
    not bound by the remote command line. Each is exported to the programs the
    script starts when the kernel allows it; a larger one (shell scripts only)
    stays a variable of the script's shell.
    """
    check_env(env)
    lines = []
    for key, value in env.items():
        fits = len(key.encode()) + 1 + len(value.encode()) < ENV_STRING_MAX
        if not fits and not shell:
            raise ValueError(
                f"env value {key} is {len(value.encode())} bytes: a program's environment holds"
                f" at most {ENV_STRING_MAX // 1024} KiB per variable; a shell script (#!/bin/sh)"
                " receives it as a shell variable")
        lines.append(f"{'export ' if fits else ''}{key}={shlex.quote(value)}\n")
    return "".join(lines)


def with_env_source(script: str, env_path: str) -> str:
    """A shell script that first sources its env file, on its own first line.

    Line 1 is the shebang (a comment to the shell) or ordinary code that may
    follow a `;`; either way every later line keeps its number in errors.
    """
    first, nl, rest = script.partition("\n")
    return f". {shlex.quote(env_path)}; {first}{nl}{rest}"


def build_command(
    workdir: str, script_path: str, argv: list[str], env_path: str, timeout: float, sudo: bool,
    args: Sequence[str] = (), clear_export: bool = True,
) -> str:
    """The shell command line that runs one step (see the module doc of `steps` for why so).

    It carries paths only: a shell script sources `env_path` itself (see
    `with_env_source`); any other interpreter is started by `sh`, which sources
    it and execs the interpreter. Under `sudo`, whose environment is reset,
    the file is read after the switch.
    """
    # The step's own arguments follow the script, each one quoted: one word each.
    run = " ".join(shlex.quote(a) for a in [*argv, script_path, *args])
    if not is_shell(argv):
        loader = shlex.quote('. "$1" && shift && exec "$@"')
        run = f"sh -c {loader} sh {shlex.quote(env_path)} {run}"
    limit = max(1, math.ceil(timeout))
    return (
        f"cd {shlex.quote(workdir)} && {'rm -f export && ' if clear_export else ''}"
        "echo $$ > pid && "
        f"if command -v timeout >/dev/null 2>&1; then T='timeout -k {KILL_AFTER} {limit}'; "
        f"else T=; fi && exec {'sudo -n ' if sudo else ''}$T {run} </dev/null 2>&1"
    )


# --- one channel per step ------------------------------------------------------------

# The exit status of the one-shot command when the private folder or the step's files
# could not be written (the reason is in the step's output).
PREP_FAILED = 198
MAX_EXPORT = 1 << 20


def oneshot_command(workdir: str, step: str, env_bytes: int, run_command: str,
                    sudo: bool) -> str:
    """One exec channel for a whole step (the SFTP way took ~15 round trips).

    On stdin: the env file (`env_bytes` long, read byte by byte by `dd` so
    nothing past it is consumed), then the script (the rest). The folder and
    both files are made 0700/0600 (umask 077), replacing whatever was there
    (a link left by an earlier step is removed, not followed). The step runs
    as `run_command` (build_command) with its output on stdout; afterwards
    stderr carries only a trailer: `STATUS SIZE` and the export file's bytes
    (`STATUS -` when there is none, `STATUS ?` when it cannot be read), so the
    export comes back on the same channel.
    """
    d, env, scr = (shlex.quote(x) for x in (workdir, f"{step}.env", f"{step}.script"))
    # Few programs: each one started costs a fork and exec on the host (`[`,
    # `printf`, `cd` are shell builtins). `run_command` must not remove `export`
    # again (build_command(clear_export=False)).
    send = (f"n=$(wc -c < $f); printf '%s %s\\n' $s $n >&2; "
            f"if [ $n -le {MAX_EXPORT} ]; then cat $f >&2; fi")
    root_copy = ("elif sudo -n cat export > .export 2>/dev/null; then f=.export; "
                 f"{send}; rm -f .export; " if sudo else "")
    return (
        f"umask 077; {{ {{ [ -d {d} ] || mkdir -p {d}; }} && cd {d} && "
        f"rm -f {env} {scr} export .export && "
        f"dd ibs=1 count={int(env_bytes)} of={env} 2>/dev/null && cat > {scr}; }} 2>&1 "
        f"|| exit {PREP_FAILED}; "
        f"sh -c {shlex.quote(run_command)}; s=$?; "
        f"if [ ! -e export ]; then printf '%s -\\n' $s >&2; "
        f"elif [ -r export ]; then f=export; {send}; "
        f"{root_copy}"
        f"else printf '%s ?\\n' $s >&2; fi; exit $s"
    )


def parse_trailer(data: bytes) -> tuple[int, str, bytes] | None:
    """The one-shot trailer: (status, "-" | "?" | size, export bytes); None if incomplete."""
    head, nl, rest = data.partition(b"\n")
    if not nl:
        return None
    words = head.decode(errors="replace").split()
    if len(words) != 2 or not words[0].lstrip("-").isdigit():
        raise ValueError(f"unexpected step trailer {head[:80]!r}")
    status, state = int(words[0]), words[1]
    if state in ("-", "?"):
        return status, state, b""
    if not state.isdigit():
        raise ValueError(f"unexpected step trailer {head[:80]!r}")
    size = int(state)
    if size > MAX_EXPORT:
        return status, state, b""
    if len(rest) < size:
        return None
    return status, state, rest[:size]


def parse_export(text: str, where: str) -> dict[str, Any]:
    """An export file: a JSON object (values kept as JSON gives them) or `key=value` lines."""
    if "\0" in text:
        line = text.count("\n", 0, text.index("\0")) + 1
        raise ValueError(f"export file {where}: line {line} has a NUL byte; exported values"
                         " are text that scripts and environments can hold")
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
        bad = _nul_path(data)
        if bad is not None:
            raise ValueError(f"export file {where}: {bad} holds a NUL (\\u0000); exported"
                             " values are text that scripts and environments can hold")
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


def _nul_path(value: Any, path: str = "") -> str | None:
    """Where in a JSON value a string (key or value) holds a NUL, e.g. `key "a" [2]`."""
    if isinstance(value, str):
        return (path or "a value") if "\0" in value else None
    if isinstance(value, dict):
        for k, v in value.items():
            here = f"{path}[{k!r}]" if path else f"key {k!r}"
            if "\0" in k:
                return here
            found = _nul_path(v, here)
            if found:
                return found
    if isinstance(value, list):
        for i, v in enumerate(value):
            found = _nul_path(v, f"{path}[{i}]")
            if found:
                return found
    return None


def check_inputs(script: str, env: dict[str, str], service: str, step: str) -> None:
    """Refuse before connecting what no host can run as given (see the module doc)."""
    if "\0" in script:
        line = script.count("\n", 0, script.index("\0")) + 1
        raise RemoteError(service, step, f"the rendered {step} script has a NUL byte on line"
                          f" {line}; a shell would silently drop it")
    try:
        check_env(env)
    except ValueError as e:
        raise RemoteError(service, step, str(e)) from None


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
        self.remember(data)

    def remember(self, data: bytes) -> None:
        """Keep `data` for the tail only (output past the file's limit comes here too)."""
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
