"""A fake of `cloudinitd.remote` for tests: scripts "run" as data says, nothing connects.

Put it on a run's context (`ctx.remote = FakeRemote(...)`) and the engine's
configure steps call it instead of SSH. What each script does is data, per
service (`web`) or per instance (`web-1`), per step (`boot`, `ready`,
`terminate`, or `ssh` for reaching the host):

    ok                      exit 0 (the default)
    fail                    exit 1
    {fail: MESSAGE}         exit 1 with MESSAGE in the log tail
    {fail_times: N}         fail the first N runs, then succeed
    {ticks: N}              take N ticks (one tick stands for one second): a
                            `ready` script needs N attempts; any step whose N
                            passes the service's timeout times out
    {exports: {KEY: VALUE}} exit 0 and export these (VALUE may say {index})
    {wait_for: [LABEL]}     first wait until calls with these labels began
                            (`web-0.boot`; `web-0.warm` for a warm-up, see
                            `prewarm`); fail if they do not within 10 s

Connections made ahead of need (`prewarm`) are recorded in `warmed`, apart
from the steps. Every call is recorded (`calls`) with a sequence number at its start and
end, so a test can check order ("db finished before web started") without
clocks, and read the scripts and environment exactly as rendered.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cloudinitd.errors import RemoteError
from cloudinitd.remote import SshTarget, hostkeys


@dataclass
class Call:
    service: str
    index: int
    step: str
    start: int
    end: int = -1
    ok: bool = True
    script: str = ""
    env: dict[str, str] = field(default_factory=dict)
    attempts: int = 1
    thread: str = ""  # the worker that ran it (`ssh_0`: the converge's SSH pool)

    @property
    def label(self) -> str:
        return f"{self.service}-{self.index}.{self.step}"


def _index_of(target: SshTarget) -> int:
    return int((target.label or "x-0").rpartition("-")[2])


class FakeRemote:
    """Stands in for the `cloudinitd.remote` module on a RunContext."""

    SshTarget = SshTarget

    def __init__(self, behaviour: Mapping[str, Mapping[str, Any]] | None = None):
        self.behaviour: dict[str, dict[str, Any]] = {k: dict(v) for k, v in
                                                     (behaviour or {}).items()}
        self.calls: list[Call] = []
        self.removed_dirs: list[str] = []
        self.warmed: list[Call] = []  # prewarm calls, in order
        self._runs: dict[tuple[str, int, str], int] = {}
        self._seq = itertools.count()
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)  # calls began: see _began

    # what the data says ------------------------------------------------------
    def _spec(self, service: str, index: int, step: str) -> Any:
        for key in (f"{service}-{index}", service):
            if step in self.behaviour.get(key, {}):
                return self.behaviour[key][step]
        return "ok"

    def _outcome(self, service: str, index: int, step: str,
                 timeout: float) -> tuple[bool, str, int, dict[str, Any]]:
        """(ok, message, ticks, exports) of this run of the step."""
        spec = self._spec(service, index, step)
        if (isinstance(spec, Mapping) and spec.get("wait_for")
                and not self._began(list(spec["wait_for"]))):
            return False, f"waited in vain for {spec['wait_for']}", 1, {}
        with self._lock:
            n = self._runs.get((service, index, step), 0)
            self._runs[(service, index, step)] = n + 1
        if spec in ("ok", None):
            return True, "", 1, {}
        if spec == "fail":
            return False, "exited 1", 1, {}
        if not isinstance(spec, Mapping):
            raise ValueError(f"fake remote: unknown behaviour {spec!r} for {service}.{step}")
        ticks = int(spec.get("ticks", 1))
        if ticks > timeout:
            return False, f"timed out after {timeout:.0f}s", ticks, {}
        if "fail" in spec:
            return False, str(spec["fail"]), ticks, {}
        if n < int(spec.get("fail_times", 0)):
            return False, f"exited 1 (run {n + 1})", ticks, {}
        exports = {str(k): str(v).format(index=index, service=service)
                   for k, v in (spec.get("exports") or {}).items()}
        return True, "", ticks, exports

    def _begin(self, service: str, index: int, step: str, script: str = "",
               env: Mapping[str, str] | None = None) -> Call:
        call = Call(service, index, step, next(self._seq), script=script, env=dict(env or {}),
                    thread=threading.current_thread().name)
        with self._cond:
            self.calls.append(call)
            self._cond.notify_all()
        return call

    def _end(self, call: Call, ok: bool) -> None:
        call.ok, call.end = ok, next(self._seq)

    def _began(self, labels: list[str], timeout: float = 10.0) -> bool:
        with self._cond:
            return self._cond.wait_for(
                lambda: set(labels) <= {c.label for c in self.calls + self.warmed}, timeout)

    # the module's surface -----------------------------------------------------
    def wait_for_ssh(self, target: SshTarget, timeout: float, service: str) -> None:
        index = _index_of(target)
        call = self._begin(service, index, "ssh")
        ok, message, _, _ = self._outcome(service, index, "ssh", timeout)
        self._end(call, ok)
        if not ok:
            raise RemoteError(service, "ssh", f"cannot reach {target.label}: {message}")

    def run_step(self, target: SshTarget, *, run: str, service: str, index: int, step: str,
                 script: str, env: dict[str, str], log_path: Path,
                 timeout: float, args: list[str] | None = None,
                 files: list[Any] | None = None) -> dict[str, Any]:
        call = self._begin(service, index, step, script, env)
        ok, message, _, exports = self._outcome(service, index, step, timeout)
        self._log(log_path, step, message)
        self._end(call, ok)
        if not ok:
            raise RemoteError(service, step, message, log_tail=message, log_path=str(log_path))
        return exports

    def run_ready(self, target: SshTarget, *, run: str, service: str, index: int, script: str,
                  env: dict[str, str], log_path: Path, timeout: float, interval: float = 1.0,
                  step: str = "ready", args: list[str] | None = None,
                  files: list[Any] | None = None) -> int:
        call = self._begin(service, index, step, script, env)
        ok, message, ticks, _ = self._outcome(service, index, step, timeout)
        call.attempts = ticks
        self._log(log_path, step, message)
        self._end(call, ok)
        if not ok:
            raise RemoteError(service, step, message, log_tail=message, log_path=str(log_path))
        return ticks

    def prewarm(self, target: SshTarget, service: str) -> bool:
        """Connecting ahead of need: recorded in `warmed` (not a step: not in `calls`).

        Like the real one, False for a host SSH does not reach (`ssh: fail`).
        """
        index = _index_of(target)
        with self._cond:
            self.warmed.append(Call(service, index, "warm", next(self._seq),
                                    thread=threading.current_thread().name))
            self._cond.notify_all()
        return self._spec(service, index, "ssh") != "fail"

    def reported_hostname(self, target: SshTarget, service: str) -> str | None:
        """What an existing host calls itself: its label here (nothing is contacted)."""
        return target.label or None

    def forget_host(self, known_hosts: Path, address: str, port: int = 22) -> int:
        return hostkeys.forget_host(known_hosts, address, port)  # a local file only

    def remove_run_dir(self, target: SshTarget, run: str, service: str = "-") -> None:
        self.removed_dirs.append(target.label or "")

    def close_all(self) -> None:
        """Nothing is open."""

    @staticmethod
    def _log(log_path: Path, step: str, message: str) -> None:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        Path(log_path).write_text(f"fake {step}: {message or 'ok'}\n")

    # what a test reads --------------------------------------------------------
    def steps(self, step: str | None = None) -> list[str]:
        """`service-index.step` labels in the order the calls started."""
        return [c.label for c in sorted(self.calls, key=lambda c: c.start)
                if step is None or c.step == step]

    def finished_before(self, first: str, then: str) -> bool:
        """Every call of service `first` ended before any call of `then` began."""
        a = [c.end for c in self.calls if c.service == first]
        b = [c.start for c in self.calls if c.service == then]
        return bool(a) and bool(b) and max(a) < min(b)
