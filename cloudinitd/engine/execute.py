"""`exec`: one command on many instances at once, with one result per instance.

Like Fabric's `GroupResult`, in the engine's one outcome shape (outcome.py):
every instance gets an `InstanceOutcome` (its exit status and output, or why
it could not be reached); the outcome fails if any did.
Connections come from the engine's SSH layer (`remote.session_for`), so
they use the run's key and pinned host keys.
"""

from __future__ import annotations

import shlex
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from cloudinitd.engine.access import Instance
from cloudinitd.engine.outcome import InstanceOutcome, RunOutcome, by_service
from cloudinitd.errors import RemoteError
from cloudinitd.remote import session_for
from cloudinitd.remote.session import TRANSIENT, describe, forget_session

# (instance label, "stdout" | "stderr", one line without its newline)
OnLine = Callable[[str, str, str], None]
MAX_PARALLEL = 32


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
             on_line: OnLine) -> InstanceOutcome:
    out = _LineWriter(inst.label, "stdout", on_line)
    err = _LineWriter(inst.label, "stderr", on_line)
    try:
        sess = session_for(inst.target, inst.service)
        done = sess.conn.run(command, warn=True, hide=False, in_stream=False, pty=False,
                             out_stream=out, err_stream=err, timeout=timeout)
    except RemoteError as exc:
        return _never_ran(inst, str(exc))
    except TRANSIENT as exc:
        forget_session(inst.target)
        return _never_ran(inst, describe(exc))
    except Exception as exc:  # a timeout or a dropped connection: this instance only
        forget_session(inst.target)
        return _never_ran(inst, describe(exc))
    finally:
        out.close()
        err.close()
    ok = done.exited == 0
    return InstanceOutcome(inst.service, inst.index, ok, "running", address=inst.address,
                           detail="" if ok else f"exit status {done.exited}",
                           step=None if ok else "exec", exit=done.exited,
                           stdout=done.stdout, stderr=done.stderr)


def _never_ran(inst: Instance, why: str) -> InstanceOutcome:
    return InstanceOutcome(inst.service, inst.index, False, "running", address=inst.address,
                           detail=why, step="exec")


def run_command(targets: list[Instance], command: str, *, run: str = "", sudo: bool = False,
                timeout: float | None = None, on_line: OnLine | None = None) -> RunOutcome:
    """Run `command` on every target in parallel: one instance outcome each, in the order
    of `targets` (a service is ok when all its instances are)."""
    lock = threading.Lock()

    def serialized(label: str, stream: str, line: str) -> None:
        if on_line is not None:
            with lock:  # lines of different instances never interleave mid-line
                on_line(label, stream, line)

    text = remote_command(command, sudo)
    if not targets:
        return RunOutcome(run)
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(targets))) as pool:
        futures = [pool.submit(_run_one, t, text, timeout, serialized) for t in targets]
        return by_service(run, tuple(f.result() for f in futures), bad="failed")
