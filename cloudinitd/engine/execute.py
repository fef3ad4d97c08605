"""`exec`: one command on many instances at once, with one result per instance.

Like Fabric's `GroupResult`: every instance gets a result (its exit status
and output, or why it could not be reached); the group fails if any did.
Connections come from the engine's SSH layer (`remote.session_for`), so
they use the run's key and pinned host keys.
"""

from __future__ import annotations

import shlex
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

from cloudinitd.engine.access import Instance
from cloudinitd.errors import RemoteError
from cloudinitd.remote import session_for
from cloudinitd.remote.session import TRANSIENT, describe, forget_session

# (instance label, "stdout" | "stderr", one line without its newline)
OnLine = Callable[[str, str, str], None]
MAX_PARALLEL = 32


@dataclass
class InstanceResult:
    service: str
    index: int
    address: str
    exit: int | None  # None: never ran (unreachable, host key refused)
    stdout: str = ""
    stderr: str = ""
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.exit == 0

    @property
    def label(self) -> str:
        return f"{self.service}/{self.index}"


@dataclass
class GroupResult:
    results: list[InstanceResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def failed(self) -> list[InstanceResult]:
        return [r for r in self.results if not r.ok]

    def as_list(self) -> list[dict]:
        return [asdict(r) for r in self.results]


class _LineWriter:
    """A file-like sink for invoke that hands on whole lines as they arrive."""

    def __init__(self, label: str, stream: str, on_line: OnLine):
        self.label, self.stream, self.on_line = label, stream, on_line
        self._buf = ""

    def write(self, data: str) -> int:
        self._buf += data
        *lines, self._buf = self._buf.split("\n")
        for line in lines:
            self.on_line(self.label, self.stream, line)
        return len(data)

    def flush(self) -> None:
        return None

    def close(self) -> None:
        if self._buf:
            self.on_line(self.label, self.stream, self._buf)
            self._buf = ""


def remote_command(command: str, sudo: bool) -> str:
    # `sudo -n`: never wait for a password prompt nobody can answer.
    return f"sudo -n -- sh -c {shlex.quote(command)}" if sudo else command


def _run_one(inst: Instance, command: str, timeout: float | None,
             on_line: OnLine) -> InstanceResult:
    result = InstanceResult(inst.service, inst.index, inst.address, None)
    out = _LineWriter(inst.label, "stdout", on_line)
    err = _LineWriter(inst.label, "stderr", on_line)
    try:
        sess = session_for(inst.target, inst.service)
        done = sess.conn.run(command, warn=True, hide=False, in_stream=False, pty=False,
                             out_stream=out, err_stream=err, timeout=timeout)
        result.exit, result.stdout, result.stderr = done.exited, done.stdout, done.stderr
    except RemoteError as exc:
        result.error = str(exc)
    except TRANSIENT as exc:
        forget_session(inst.target)
        result.error = describe(exc)
    except Exception as exc:  # a timeout or a dropped connection: this instance only
        forget_session(inst.target)
        result.error = describe(exc)
    finally:
        out.close()
        err.close()
    return result


def run_command(targets: list[Instance], command: str, *, sudo: bool = False,
                timeout: float | None = None, on_line: OnLine | None = None) -> GroupResult:
    """Run `command` on every target in parallel; results in the order of `targets`."""
    lock = threading.Lock()

    def serialized(label: str, stream: str, line: str) -> None:
        if on_line is not None:
            with lock:  # lines of different instances never interleave mid-line
                on_line(label, stream, line)

    text = remote_command(command, sudo)
    if not targets:
        return GroupResult([])
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(targets))) as pool:
        futures = [pool.submit(_run_one, t, text, timeout, serialized) for t in targets]
        return GroupResult([f.result() for f in futures])
