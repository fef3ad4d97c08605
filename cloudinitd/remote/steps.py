"""Running a service's rendered boot / ready / terminate scripts on a host.

Each (run, service, index) gets a private directory on the host,
`$HOME/.cloudinitd-remote/<run>/<service>-<index>/` (0700): the script,
its export file and a pid file live there. Not /tmp: /tmp is world-visible,
often noexec, and may be wiped by a reboot between boot and repair. Scripts
are started through an interpreter (their shebang's, else `sh`), so noexec
mounts and lost exec bits do not matter.

The step's environment travels in a file beside the script,
`<step>.env` (0600), never on the command line: sshd drops variables the
client sends unless AcceptEnv lists them, a command line is bounded in size
(a 200 KB value failed with "Argument list too long"), and the process list
shows arguments to every user. A shell script sources the file on its own
first line (line numbers stay as written); any other interpreter is started
by `sh`, which sources the file and execs it. A value too large for the
kernel to pass in an environment (128 KiB) reaches a shell script as a shell
variable and is refused for other interpreters. A NUL byte, which neither
an environment nor a shell can hold, is refused in values, scripts and
export files alike, with the service and step named.

Output goes to the step's log as it arrives. A remote `timeout` kills the
step's whole process group on the host; a local deadline a little later
backs it up in case the host stops answering.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloudinitd.errors import RemoteError
from cloudinitd.remote import upload
from cloudinitd.remote.channel import StreamError, stream_command
from cloudinitd.remote.script import (
    KILL_AFTER,
    MAX_EXPORT,
    PREP_FAILED,
    StepLog,
    build_command,
    check_inputs,
    check_name,
    env_file,
    interpreter,
    is_shell,
    oneshot_command,
    parse_trailer,
    step_env,
    with_env_source,
)
from cloudinitd.remote.session import (
    TRANSIENT,
    CommandTimedOut,
    Session,
    SshTarget,
    describe,
    forget_session,
    session_for,
)
from cloudinitd.remote.upload import REMOTE_ROOT


@dataclass
class _Outcome:
    status: int | None  # None: no exit status (local deadline or lost connection)
    timed_out: bool
    elapsed: float
    tail: str
    # One-shot steps: the trailer's export state ("-" none, "?" unreadable, else its
    # size) and bytes; None when the step went the SFTP way (read the export then).
    export: tuple[str, bytes] | None = None


# --- remote side --------------------------------------------------------------------


def remote_run_dir(run: str, target: SshTarget) -> str:
    """The run's folder name under ~/.cloudinitd-remote on a host (`RUN` or `RUN.SCOPE`)."""
    return f"{run}.{target.scope}" if target.scope else run


@dataclass(frozen=True)
class _Step:
    """One step to run on a host: what each attempt at it needs, its names checked once."""

    target: SshTarget
    run: str
    service: str
    index: int
    step: str
    script: str
    env: dict[str, str]
    args: Sequence[str] = ()
    files: Sequence[Path] = ()

    def __post_init__(self) -> None:
        check_name("run", self.run, self.service, self.step)
        check_name("service", self.service, self.service, self.step)
        check_name("step", self.step, self.service, self.step)
        check_inputs(self.script, self.env, self.service, self.step)

    def header(self, attempt: str = "") -> str:
        """The step log's line before an attempt's output."""
        return (f"{self.step} {self.service}-{self.index}{attempt} on {self.target.where}"
                f" ({self.target.label})")


def _attempt(st: _Step, log: StepLog, timeout: float,
             header: str) -> tuple[_Outcome, Session, str]:
    target, run, service, index, step = st.target, st.run, st.service, st.index, st.step
    script, env, args, files = st.script, st.env, st.args, st.files
    argv = interpreter(script)
    shell = is_shell(argv)
    sess = session_for(target, service)
    sudo = target.user != "root"
    # `files:` bundles go the SFTP way (many files, modes each); a step without
    # them is one exec channel: folder, env file, script, run, export.
    oneshot = not files
    if oneshot:
        workdir = (f"{sess.home.rstrip('/')}/{REMOTE_ROOT}/{remote_run_dir(run, target)}"
                   f"/{service}-{index}")
    else:
        workdir = upload.private_dir(sess, remote_run_dir(run, target), service, index)
    script_path = f"{workdir}/{step}.script"
    env_path = f"{workdir}/{step}.env"
    try:
        env_text = env_file(step_env(run, service, index, step, f"{workdir}/export", env), shell)
    except ValueError as e:
        raise RemoteError(service, step, str(e)) from None
    body = with_env_source(script, env_path) if shell else script
    command = build_command(workdir, script_path, argv, env_path, timeout, sudo=sudo, args=args,
                            clear_export=not oneshot)
    stdin = None
    if oneshot:
        env_bytes = env_text.encode()
        stdin = env_bytes + body.encode()
        command = oneshot_command(workdir, step, len(env_bytes), command, sudo)
    else:
        # The env file first: a shell script sources it on its first line.
        upload.upload(sess, env_path, env_text)
        upload.upload(sess, script_path, body)
        upload.upload_files(sess, workdir, files, service, step)
    log.header(header)
    start = time.monotonic()
    try:
        status, local_deadline, err = stream_command(sess, command, log,
                                                     timeout + KILL_AFTER + 10, stdin)
    except StreamError as e:
        raise RemoteError(service, step, f"on {target.label}: {e}", log_tail=log.tail()) \
            from None
    elapsed = time.monotonic() - start
    export = None
    if oneshot and not local_deadline:
        try:
            trailer = parse_trailer(err)
        except ValueError as e:
            raise RemoteError(service, step, f"on {target.label}: {e}") from None
        if trailer is None and status == PREP_FAILED:
            raise RemoteError(service, step, f"could not write the step's files into {workdir}"
                              f" on {target.label}: {log.tail()[-300:]}",
                              log_tail=log.tail()) from None
        if trailer is not None:
            status, state, data = trailer
            export = (state, data)
    timed_out = local_deadline or (status in (124, 137) and elapsed >= timeout - 1)
    if local_deadline:
        _kill_leftover(target, service, workdir)
    log.note(
        f"timed out after {timeout:g}s"
        if timed_out
        else f"exit status {status} after {elapsed:.1f}s"
    )
    return _Outcome(status, timed_out, elapsed, log.tail(), export), sess, workdir


def _kill_leftover(target: SshTarget, service: str, workdir: str) -> None:
    """Best effort after the local deadline: kill the step's process group by its pid file."""
    sudo = "sudo -n " if target.user != "root" else ""
    pidfile = shlex.quote(f"{workdir}/pid")
    cmd = f"P=$(cat {pidfile}) && {sudo}kill -KILL -- -$P $P"
    try:
        sess = session_for(target, service, connect_timeout=5)
        sess.run(cmd, timeout=10)
    except Exception:  # the host may be gone; the step already failed
        pass


def _export_from_trailer(export: tuple[str, bytes], target: SshTarget, workdir: str,
                         service: str, step: str) -> dict[str, Any]:
    """The export file as the one-shot trailer brought it back (see oneshot_command)."""
    state, raw = export
    where = f"{target.label}:{workdir}/export"
    if state == "-":
        return {}
    if state == "?":
        raise RemoteError(service, step, f"cannot read export file {where}")
    if int(state) > MAX_EXPORT:
        raise RemoteError(service, step, f"export file {where} is larger than {MAX_EXPORT} bytes")
    return upload.parse_export_bytes(raw, where, service, step)


def _failure(o: _Outcome, timeout: float) -> str:
    if o.timed_out:
        return f"timed out after {timeout:g}s (killed)"
    if o.status is None or o.status < 0:
        return "ended without an exit status (killed by a signal or connection lost)"
    return f"exit status {o.status}"


# --- public -------------------------------------------------------------------------


def run_step(
    target: SshTarget,
    *,
    run: str,
    service: str,
    index: int,
    step: str,
    script: str,
    env: dict[str, str],
    log_path: Path,
    timeout: float,
    args: Sequence[str] = (),
    files: Sequence[Path] = (),
) -> dict[str, Any]:
    """Run one rendered script on `target`; return what it exported ({} if nothing).

    Raises RemoteError on a non-zero exit, a timeout, an SSH failure or a
    malformed export file; the error carries the tail of the step's log.
    """
    st = _Step(target, run, service, index, step, script, env, args, files)
    log = StepLog(log_path)
    try:
        outcome, sess, workdir = _attempt(st, log, timeout, st.header())
    except RemoteError:
        log.close()
        raise
    except (*TRANSIENT, CommandTimedOut) as e:
        forget_session(target)
        log.note(f"SSH failed: {describe(e)}")
        tail = log.tail()
        log.close()
        raise RemoteError(
            service,
            step,
            f"SSH to {target.where} ({target.label}) failed: {describe(e)}",
            log_tail=tail,
            log_path=str(log_path),
        ) from None
    log.close()
    if outcome.status != 0 or outcome.timed_out:
        raise RemoteError(
            service, step, _failure(outcome, timeout), log_tail=outcome.tail, log_path=str(log_path)
        )
    try:
        if outcome.export is not None:
            return _export_from_trailer(outcome.export, target, workdir, service, step)
        return upload.read_export(sess, target, workdir, service, step)
    except (*TRANSIENT, CommandTimedOut) as e:
        forget_session(target)
        raise RemoteError(
            service,
            step,
            f"reading exports from {target.label} failed: {describe(e)}",
            log_path=str(log_path),
        ) from None


def run_ready(
    target: SshTarget,
    *,
    run: str,
    service: str,
    index: int,
    script: str,
    env: dict[str, str],
    log_path: Path,
    timeout: float,
    interval: float = 1.0,
    step: str = "ready",
    args: Sequence[str] = (),
    files: Sequence[Path] = (),
) -> int:
    """Run the ready script until it exits 0; return the number of attempts.

    Between failed attempts wait `interval`, growing by half each time up to
    max(interval, 5) s. SSH trouble counts as a failed attempt (the host may
    be rebooting). After `timeout` seconds: RemoteError with the log tail.
    """
    st = _Step(target, run, service, index, step, script, env, args, files)
    deadline = time.monotonic() + timeout
    delay = interval
    attempts = 0
    last = "no attempt finished"
    log = StepLog(log_path)
    try:
        while True:
            attempts += 1
            remaining = max(deadline - time.monotonic(), 1.0)
            try:
                outcome, _, _ = _attempt(st, log, remaining, st.header(f" attempt {attempts}"))
                if outcome.status == 0 and not outcome.timed_out:
                    return attempts
                last = _failure(outcome, remaining)
            except RemoteError:
                raise  # host key changed or unsafe names: retrying cannot help
            except (*TRANSIENT, CommandTimedOut) as e:
                forget_session(target)
                last = f"SSH to {target.where} failed: {describe(e)}"
                log.note(last)
            if time.monotonic() + delay >= deadline:
                raise RemoteError(
                    service,
                    step,
                    f"not ready after {attempts} attempts in {timeout:g}s; last: {last}",
                    log_tail=log.tail(),
                    log_path=str(log_path),
                )
            time.sleep(delay)
            delay = min(delay * 1.5, max(interval, 5.0))
    finally:
        log.close()


def remove_run_dir(target: SshTarget, run: str, service: str = "-") -> None:
    """Delete the run's private directory on the host (terminate / clean)."""
    check_name("run", run, service, "clean")
    run = remote_run_dir(run, target)
    check_name("run", run, service, "clean")
    sudo = "sudo -n " if target.user != "root" else ""
    base = f'"$HOME"/{REMOTE_ROOT}'
    cmd = f"{sudo}rm -rf -- {base}/{shlex.quote(run)} && (rmdir {base} 2>/dev/null; true)"
    try:
        status, out = session_for(target, service).run(cmd, timeout=120)
    except (*TRANSIENT, CommandTimedOut) as e:
        forget_session(target)
        raise RemoteError(
            service, "clean", f"SSH to {target.where} failed: {describe(e)}"
        ) from None
    if status != 0:
        raise RemoteError(
            service, "clean", f"removing ~/{REMOTE_ROOT}/{run} on {target.label}: {out.strip()}"
        )
