"""Remote steps against real OpenSSH servers on 127.0.0.x (tests/support/sshd.py)."""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from cloudinitd.errors import RemoteError
from cloudinitd.remote import (
    SshTarget,
    close_all,
    interpreter,
    parse_export,
    remove_run_dir,
    run_ready,
    run_step,
    session_for,
    wait_for_ssh,
)
from tests.support.sshd import SUDO_USER, Host, _free_port

# Unique per test process: every sshd host here shares root's home, and so do
# concurrent test runs on this machine (their remove_run_dir would delete ours).
RUN = f"r1-{os.getpid()}"
HOME = Path(os.path.expanduser("~root"))


@pytest.fixture(autouse=True)
def _close_sessions():
    yield
    close_all()


def target_for(host: Host, tmp_path: Path, label: str = "svc-0") -> SshTarget:
    return SshTarget(
        address=host.address,
        port=host.port,
        user=host.user,
        key_path=host.key_path,
        known_hosts=tmp_path / "known_hosts",
        label=label,
    )


def step(target: SshTarget, script: str, tmp_path: Path, *, env=None, timeout=60.0,
         service="svc", index=0, step_name="boot"):  # fmt: skip
    return run_step(
        target,
        run=RUN,
        service=service,
        index=index,
        step=step_name,
        script=script,
        env=env or {},
        log_path=tmp_path / "logs" / f"{service}-{index}.{step_name}.log",
        timeout=timeout,
    )


@pytest.fixture
def host_target(sshd_hosts, tmp_path):
    (host,) = sshd_hosts(1)
    target = target_for(host, tmp_path)
    wait_for_ssh(target, timeout=15, service="svc")
    yield host, target
    # Leave root's home as we found it.
    remove_run_dir(target, RUN)


# --- exports ---------------------------------------------------------------------


def test_boot_script_exports_json(host_target, tmp_path):
    _, target = host_target
    script = """#!/bin/sh
cat > "$CLOUDINITD_EXPORT" <<'EOF'
{"export_dir": "/srv/share", "port": 2049, "tags": ["a", "b"]}
EOF
"""
    assert step(target, script, tmp_path) == {
        "export_dir": "/srv/share",
        "port": 2049,
        "tags": ["a", "b"],
    }


def test_boot_script_exports_key_value_lines(host_target, tmp_path):
    _, target = host_target
    script = (
        "echo '# a comment' > \"$CLOUDINITD_EXPORT\"\n"
        "echo 'token=abc=def' >> \"$CLOUDINITD_EXPORT\"\n"
        "echo 'greeting = hello world' >> \"$CLOUDINITD_EXPORT\"\n"
    )
    assert step(target, script, tmp_path) == {"token": "abc=def", "greeting": "hello world"}


def test_no_export_file_gives_empty_dict_even_after_an_earlier_export(host_target, tmp_path):
    _, target = host_target
    assert step(target, 'echo a=1 > "$CLOUDINITD_EXPORT"', tmp_path) == {"a": "1"}
    # The export of a previous run of the step must not leak into this one.
    assert step(target, "true", tmp_path) == {}


def test_malformed_export_file_names_the_file(host_target, tmp_path):
    _, target = host_target
    with pytest.raises(RemoteError) as err:
        step(target, 'echo "{not json" > "$CLOUDINITD_EXPORT"', tmp_path)
    assert "malformed export file" in str(err.value)
    assert f".cloudinitd-remote/{RUN}/svc-0/export" in str(err.value)


def test_parse_export_rejects_lines_without_equals():
    with pytest.raises(ValueError, match="line 2"):
        parse_export("a=1\njust words\n", "h:/x/export")
    with pytest.raises(ValueError, match="JSON must be an object"):
        parse_export("[1, 2]", "h:/x/export")


# --- failures and logs -----------------------------------------------------------


def test_failing_script_raises_with_log_tail_and_log_file(host_target, tmp_path):
    _, target = host_target
    script = 'for i in $(seq 1 30); do echo "line $i"; done\necho "boom on stderr" >&2\nexit 3\n'
    with pytest.raises(RemoteError) as err:
        step(target, script, tmp_path)
    e = err.value
    assert e.service == "svc" and e.step == "boot"
    assert "exit status 3" in str(e)
    assert "boom on stderr" in e.log_tail
    assert "line 30" in e.log_tail
    assert "line 5\n" not in e.log_tail + "\n"  # only the tail
    log = Path(e.log_path)
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    text = log.read_text()
    assert "line 1\n" in text and "boom on stderr" in text
    assert text.startswith("=== ") and "boot svc-0 on root@" in text


def test_log_gets_a_header_per_attempt(host_target, tmp_path):
    _, target = host_target
    step(target, "echo first", tmp_path)
    step(target, "echo second", tmp_path)
    text = (tmp_path / "logs" / "svc-0.boot.log").read_text()
    assert text.count("=== ") == 2
    assert text.index("first") < text.index("second")


# --- ready -----------------------------------------------------------------------


def test_ready_script_succeeding_on_third_try_returns_3(host_target, tmp_path):
    _, target = host_target
    counter = tmp_path / "ready-count"
    script = f"""n=$(cat {counter} 2>/dev/null || echo 0)
n=$((n + 1)); echo $n > {counter}
echo "try $n"
[ "$n" -ge 3 ]
"""
    attempts = run_ready(
        target,
        run=RUN,
        service="svc",
        index=0,
        script=script,
        env={},
        log_path=tmp_path / "logs" / "svc-0.ready.log",
        timeout=30,
        interval=0.05,
    )
    assert attempts == 3
    log = (tmp_path / "logs" / "svc-0.ready.log").read_text()
    assert "attempt 3" in log and "try 3" in log


def test_ready_that_never_succeeds_times_out_with_tail(host_target, tmp_path):
    _, target = host_target
    with pytest.raises(RemoteError) as err:
        run_ready(
            target,
            run=RUN,
            service="svc",
            index=0,
            script="echo 'still waiting for the database'; exit 1",
            env={},
            log_path=tmp_path / "ready.log",
            timeout=1.5,
            interval=0.1,
        )
    assert err.value.step == "ready"
    assert "not ready after" in str(err.value)
    assert "still waiting for the database" in err.value.log_tail


# --- waiting for SSH -------------------------------------------------------------


def test_wait_for_ssh_reaches_a_host_that_starts_late(delayed_sshd, tmp_path):
    host = delayed_sshd(3)
    target = target_for(host, tmp_path)
    # Nothing answers yet: one quick attempt fails.
    with pytest.raises(RemoteError, match="no SSH on"):
        wait_for_ssh(target, timeout=0.1, service="svc")
    # The client may give up (0.1 s) before the stand-in's thread counts the
    # connection it turned away: wait for the count, do not race it.
    deadline = time.monotonic() + 10
    while host.refused < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert host.refused == 1
    wait_for_ssh(target, timeout=30, service="svc")  # turned away twice more, then in
    assert host.refused == 3
    assert step(target, 'echo up=yes > "$CLOUDINITD_EXPORT"', tmp_path) == {"up": "yes"}
    remove_run_dir(target, RUN)


def test_wait_for_ssh_retries_until_the_key_is_installed(sshd_hosts, tmp_path):
    # Like cloud-init: sshd answers before the login key is in place.
    (host,) = sshd_hosts(1)
    keys = host.dir / "authorized_keys"
    line = keys.read_text()
    keys.write_text("")
    target = target_for(host, tmp_path)
    with pytest.raises(RemoteError, match="AuthenticationException"):
        wait_for_ssh(target, timeout=0.5, service="svc")
    timer = threading.Timer(1.0, keys.write_text, args=(line,))
    timer.start()
    try:
        wait_for_ssh(target, timeout=20, service="svc")
    finally:
        timer.cancel()


def test_wait_for_ssh_times_out_on_closed_port(tmp_path, ssh_client_key):
    address = "127.0.0.254"
    port = _free_port(address)  # nothing listens there
    target = SshTarget(address, port, "root", ssh_client_key[0], tmp_path / "kh", "ghost-0")
    with pytest.raises(RemoteError) as err:
        wait_for_ssh(target, timeout=1.5, service="ghost")
    msg = str(err.value)
    assert msg.startswith("ghost: ssh failed: no SSH on 127.0.0.254:")
    assert f":{port} (ghost-0) after" in msg
    assert "Unable to connect" in msg or "refused" in msg


# --- how scripts run -------------------------------------------------------------


def test_python_shebang_runs_with_python3(host_target, tmp_path):
    _, target = host_target
    script = """#!/usr/bin/env python3
import json, os, sys
json.dump({"major": sys.version_info[0]}, open(os.environ["CLOUDINITD_EXPORT"], "w"))
"""
    assert interpreter(script) == ["/usr/bin/env", "python3"]
    assert step(target, script, tmp_path) == {"major": 3}


def test_script_lives_in_private_dir_not_tmp(host_target, tmp_path):
    _, target = host_target
    script = """#!/bin/sh
{
  echo "script=$0"
  echo "pwd=$(pwd)"
  echo "run=$CLOUDINITD_RUN"
  echo "service=$CLOUDINITD_SERVICE"
  echo "index=$CLOUDINITD_INDEX"
  echo "step=$CLOUDINITD_STEP"
  echo "export=$CLOUDINITD_EXPORT"
} > "$CLOUDINITD_EXPORT"
"""
    out = step(target, script, tmp_path, service="web", index=2)
    private = HOME / ".cloudinitd-remote" / RUN / "web-2"
    assert out == {
        "script": f"{private}/boot.script",
        "pwd": str(private),
        "run": RUN,
        "service": "web",
        "index": "2",
        "step": "boot",
        "export": f"{private}/export",
    }
    assert not out["script"].startswith("/tmp")
    for d in (HOME / ".cloudinitd-remote", private.parent, private):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
    assert stat.S_IMODE((private / "boot.script").stat().st_mode) == 0o600


def test_steps_work_when_tmp_is_noexec(sshd_hosts, tmp_path):
    (host,) = sshd_hosts(1, noexec_tmp=True)
    target = target_for(host, tmp_path)
    wait_for_ssh(target, timeout=15, service="svc")
    script = """#!/bin/bash
opts=$(awk '$2 == "/tmp" {print $4}' /proc/self/mounts)
echo "tmp_opts=$opts" > "$CLOUDINITD_EXPORT"
"""
    out = step(target, script, tmp_path)
    assert "noexec" in out["tmp_opts"].split(",")  # the condition really held
    remove_run_dir(target, RUN)


def test_env_values_arrive_intact(host_target, tmp_path):
    _, target = host_target
    canary = tmp_path / "pwned"
    env = {
        "QUOTES": "it's \"double\" and 'single'",
        "INJECT": "'; rm -rf /; '",
        "SUBST": f"$(touch {canary}) `touch {canary}` ${{HOME}}",
        "NEWLINES": "line one\nline two\n",
        "UNICODE": "héllo wörld ✓",
        "EMPTY": "",
    }
    script = """#!/usr/bin/env python3
import json, os
keys = ["QUOTES", "INJECT", "SUBST", "NEWLINES", "UNICODE", "EMPTY"]
json.dump({k: os.environ.get(k) for k in keys}, open(os.environ["CLOUDINITD_EXPORT"], "w"))
"""
    assert step(target, script, tmp_path, env=env) == env
    assert not canary.exists()


def test_timeout_kills_the_remote_command(host_target, tmp_path):
    _, target = host_target
    marker = f"600.1{os.getpid()}"  # a sleep argument no other process (or test run) uses
    with pytest.raises(RemoteError) as err:
        step(target, f"echo started\nsleep {marker}\necho never", tmp_path, timeout=2)
    assert "timed out after 2s" in str(err.value)
    assert "started" in err.value.log_tail and "never" not in err.value.log_tail
    deadline = time.monotonic() + 10
    while _pids_with_arg(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    leftover = _pids_with_arg(marker)
    for pid in leftover:  # do not leave a stray sleep behind if the assert fails
        os.kill(pid, signal.SIGKILL)
    assert not leftover, "the remote sleep survived the timeout"


def test_background_process_holding_stdout_does_not_hang_the_step(host_target, tmp_path):
    _, target = host_target
    pidfile = tmp_path / "daemon.pid"
    script = f"sleep 30.4243 &\necho $! > {pidfile}\necho daemon started\n"
    try:
        assert step(target, script, tmp_path, timeout=20) == {}
    finally:
        if pidfile.exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pidfile.read_text()), signal.SIGKILL)
    log = (tmp_path / "logs" / "svc-0.boot.log").read_text()
    assert "daemon started" in log and "exit status 0" in log


def _pids_with_arg(arg: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if arg.encode() in cmdline:
                pids.append(int(entry))
    return pids


# --- connections -----------------------------------------------------------------


def test_steps_reuse_one_connection(host_target, tmp_path):
    host, target = host_target
    first = session_for(target, "svc")
    for i in range(3):
        step(target, f"echo {i}", tmp_path)
    assert session_for(target, "svc") is first
    accepted = host.log.read_text().count("Accepted publickey")
    assert accepted == 1, host.log.read_text()


def test_remove_run_dir_deletes_the_private_dir(host_target, tmp_path):
    _, target = host_target
    step(target, "true", tmp_path, service="gone", index=0)
    assert (HOME / ".cloudinitd-remote" / RUN / "gone-0").is_dir()
    remove_run_dir(target, RUN)
    assert not (HOME / ".cloudinitd-remote" / RUN).exists()


def test_parallel_steps_on_several_hosts(sshd_hosts, tmp_path):
    hosts = sshd_hosts(3)
    targets = [target_for(h, tmp_path, label=f"c-{i}") for i, h in enumerate(hosts)]

    def work(job: tuple[int, SshTarget]) -> dict:
        i, t = job
        wait_for_ssh(t, timeout=15, service="c")
        return step(t, f'echo "who={i}" > "$CLOUDINITD_EXPORT"', tmp_path, service="c", index=i)

    # Two workers per host at once (each thread gets its own connection);
    # distinct indexes, since one instance's steps never run concurrently.
    jobs = [(i, targets[i % 3]) for i in range(6)]
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(work, jobs))
    assert results == [{"who": str(i)} for i in range(6)]
    lines = (tmp_path / "known_hosts").read_text().splitlines()
    assert sorted(ln.split()[0] for ln in lines) == sorted(f"[{h.address}]:{h.port}" for h in hosts)
    for t in targets:
        remove_run_dir(t, RUN)


def test_unsafe_names_are_refused(host_target, tmp_path):
    _, target = host_target
    with pytest.raises(RemoteError, match="unsafe service name"):
        step(target, "true", tmp_path, service="../../etc")


def test_export_json_written_by_script(host_target, tmp_path):
    _, target = host_target
    script = 'printf \'%s\' \'{"a": {"nested": true}}\' > "$CLOUDINITD_EXPORT"'
    assert step(target, script, tmp_path) == {"a": {"nested": True}}


# --- non-root SSH user: steps run as root through sudo -n ------------------------


def test_non_root_user_runs_steps_as_root_via_sudo(sshd_hosts, tmp_path):
    (host,) = sshd_hosts(1, user=SUDO_USER)
    target = target_for(host, tmp_path)
    wait_for_ssh(target, timeout=15, service="svc")
    # umask 077: the root-owned export file is unreadable to the SSH user,
    # so reading it back has to go through sudo as well.
    script = 'umask 077\necho "uid=$(id -u)" > "$CLOUDINITD_EXPORT"\necho "dir=$(pwd)" >> "$CLOUDINITD_EXPORT"\n'
    out = step(target, script, tmp_path)
    home = Path(os.path.expanduser(f"~{SUDO_USER}"))
    assert out == {"uid": "0", "dir": str(home / ".cloudinitd-remote" / RUN / "svc-0")}
    assert (home / ".cloudinitd-remote").stat().st_uid == host_uid(SUDO_USER)

    marker = f"600.2{os.getpid()}"
    with pytest.raises(RemoteError, match="timed out"):
        step(target, f"sleep {marker}", tmp_path, timeout=2)
    deadline = time.monotonic() + 10
    while _pids_with_arg(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    leftover = _pids_with_arg(marker)
    for pid in leftover:
        os.kill(pid, signal.SIGKILL)
    assert not leftover, "the sudo'ed sleep survived the timeout"

    remove_run_dir(target, RUN)  # root-owned files inside: needs sudo too
    root = home / ".cloudinitd-remote"
    assert not (root / RUN).exists()
    # The emptied root goes too (unless another test process has a run there now).
    assert not root.exists() or any(root.iterdir())


def host_uid(user: str) -> int:
    import pwd

    return pwd.getpwnam(user).pw_uid
