"""Steps of a `local: true` service: run on this machine, not over SSH.

A plan declares such a service itself (the one way a plan runs something
here). Its scripts are rendered exactly as remote ones (the same sandboxed
templates, shell-quoted values); each step runs from the run's private
folder `$CLOUDINITD_HOME/runs/RUN/local/SERVICE-INDEX/` (0700) with this
machine's environment plus the step's, under the same interpreter rule
and timeout, and exports through `$CLOUDINITD_EXPORT` like a remote step.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloudinitd.errors import RemoteError
from cloudinitd.plan.bundles import MAX_BUNDLE_BYTES, BundleError, walk_bundle
from cloudinitd.plan.limits import FileRefused, copy_checked
from cloudinitd.plan.model import LOCAL_ADDRESS
from cloudinitd.remote.script import StepLog, check_name, interpreter, parse_export, step_env


@dataclass(frozen=True)
class LocalTarget:
    """Where a local service's steps run: a folder of the run on this machine."""

    root: Path  # $CLOUDINITD_HOME/runs/RUN/local
    label: str
    where: str = "this machine"
    address: str = LOCAL_ADDRESS


def _workdir(target: LocalTarget, service: str, index: int) -> Path:
    path = target.root / f"{service}-{index}"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    for p in (target.root, path):
        os.chmod(p, 0o700)
    return path


def _copy_files(workdir: Path, files: Sequence[Path], service: str, step: str) -> None:
    """A step's `files:` beside its script (walked again: no symlink out of a bundle)."""
    try:
        for entry in files:
            for path, rel, is_dir in walk_bundle(Path(entry)):
                dest = workdir / rel
                if is_dir:
                    dest.mkdir(mode=0o700, exist_ok=True)
                else:
                    dest.unlink(missing_ok=True)
                    try:  # checked on the opened file: it may have changed since the walk
                        mode = copy_checked(path, dest, MAX_BUNDLE_BYTES)
                    except FileRefused as e:
                        raise RemoteError(service, step, f"copying files: {rel} {e.problem}") \
                            from None
                    dest.chmod((mode & 0o700) | 0o600)
    except (BundleError, OSError) as e:
        raise RemoteError(service, step, f"copying files: {e}") from None


def _attempt(target: LocalTarget, *, run: str, service: str, index: int, step: str,
             script: str, env: dict[str, str], log: StepLog, timeout: float,
             args: Sequence[str] = (), files: Sequence[Path] = ()) -> tuple[int, bool]:
    for what, value in (("run", run), ("service", service), ("step", step)):
        check_name(what, value, service, step)
    if "\0" in script or any("\0" in f"{k}{v}" for k, v in env.items()):
        raise RemoteError(service, step, "NUL byte in the script or its environment")
    workdir = _workdir(target, service, index)
    path = workdir / step
    path.write_text(script)
    path.chmod(0o700)
    (workdir / "export").unlink(missing_ok=True)
    _copy_files(workdir, files, service, step)
    full_env = {**os.environ, **step_env(run, service, index, step, str(workdir / "export"),
                                         env)}
    log.header(f"{step} {service}-{index} on this machine ({target.label})")
    # Its own session: a timeout kills the script and everything it started.
    proc = subprocess.Popen([*interpreter(script), str(path), *args], cwd=workdir, env=full_env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        timed_out = True
    log.write(out or b"")
    return proc.returncode, timed_out


def _exports(target: LocalTarget, service: str, index: int, step: str) -> dict[str, Any]:
    path = target.root / f"{service}-{index}" / "export"
    if not path.exists():
        return {}
    try:
        return parse_export(path.read_text(errors="replace"), f"{service}-{index} {step}")
    except ValueError as e:
        raise RemoteError(service, step, str(e)) from None


def run_step(target: LocalTarget, *, run: str, service: str, index: int, step: str,
             script: str, env: dict[str, str], log_path: Path, timeout: float,
             args: Sequence[str] = (), files: Sequence[Path] = ()) -> dict[str, Any]:
    """Run one rendered script here; return what it exported. RemoteError on failure."""
    log = StepLog(log_path)
    try:
        status, timed_out = _attempt(target, run=run, service=service, index=index, step=step,
                                     script=script, env=env, log=log, timeout=timeout,
                                     args=args, files=files)
    finally:
        log.close()
    if timed_out or status != 0:
        why = f"timed out after {timeout:g}s" if timed_out else f"exit status {status}"
        raise RemoteError(service, step, why, log_tail=log.tail(), log_path=str(log_path))
    return _exports(target, service, index, step)


def run_ready(target: LocalTarget, *, run: str, service: str, index: int, script: str,
              env: dict[str, str], log_path: Path, timeout: float, interval: float = 1.0,
              step: str = "ready", args: Sequence[str] = (), files: Sequence[Path] = ()) -> int:
    """The ready script until it exits 0 (as the remote one); returns the attempts."""
    deadline = time.monotonic() + timeout
    attempts, delay = 0, interval
    log = StepLog(log_path)
    try:
        while True:
            attempts += 1
            status, timed_out = _attempt(
                target, run=run, service=service, index=index, step=step, script=script,
                env=env, log=log, timeout=max(deadline - time.monotonic(), 1.0), args=args,
                files=files)
            if status == 0 and not timed_out:
                return attempts
            if time.monotonic() + delay >= deadline:
                raise RemoteError(service, step, f"not ready after {attempts} attempts in"
                                  f" {timeout:g}s", log_tail=log.tail(), log_path=str(log_path))
            time.sleep(delay)  # a retry pause, as the remote ready loop does
            delay = min(delay * 1.5, max(interval, 5.0))
    finally:
        log.close()


def remove_run_dir(target: LocalTarget, run: str, service: str = "-") -> None:
    check_name("run", run, service, "clean")
    shutil.rmtree(target.root, ignore_errors=True)
