"""A step is one exec channel (folder, env file, script, run, export) on real sshd hosts.

The SFTP way took ~15 answers per step; these tests count the SSH requests
a step makes and check that the one channel keeps what the SFTP way
guaranteed: a 0600 env file (values never on the command line), a private
0700 folder, the export read back, links left by a step not followed.
"""

from __future__ import annotations

import os
import stat
from collections import Counter
from pathlib import Path

import paramiko
import pytest

from cloudinitd.errors import RemoteError
from cloudinitd.remote import close_all, run_step, wait_for_ssh
from cloudinitd.remote.session import session_for
from tests.test_remote import HOME, RUN, step, target_for


@pytest.fixture(autouse=True)
def _close_sessions():
    yield
    close_all()


@pytest.fixture
def counted(monkeypatch):
    """Counts channel opens, exec requests (with their command lines) and SFTP sessions."""
    seen: Counter[str] = Counter()
    commands: list[str] = []
    open_channel = paramiko.Transport.open_channel
    exec_command = paramiko.Channel.exec_command
    invoke_subsystem = paramiko.Channel.invoke_subsystem

    def count_open(self, *a, **kw):
        seen["channels"] += 1
        return open_channel(self, *a, **kw)

    def count_exec(self, command):
        seen["execs"] += 1
        commands.append(command)
        return exec_command(self, command)

    def count_sftp(self, name):
        seen["sftp"] += 1
        return invoke_subsystem(self, name)

    monkeypatch.setattr(paramiko.Transport, "open_channel", count_open)
    monkeypatch.setattr(paramiko.Channel, "exec_command", count_exec)
    monkeypatch.setattr(paramiko.Channel, "invoke_subsystem", count_sftp)
    return seen, commands


@pytest.fixture
def target(sshd_hosts, tmp_path):
    (host,) = sshd_hosts(1)
    target = target_for(host, tmp_path)
    wait_for_ssh(target, timeout=15, service="svc")
    return target


def test_a_step_is_one_channel_and_brings_its_export_back(target, tmp_path, counted):
    seen, commands = counted
    secret = "hunter2-" + "x" * 40
    out = step(target, '#!/bin/sh\necho "got=$TOKEN" > "$CLOUDINITD_EXPORT"\n', tmp_path,
               env={"TOKEN": secret})
    assert out == {"got": secret}
    assert seen == {"channels": 1, "execs": 1}  # no SFTP session, no second command
    assert secret not in commands[0]  # the value travelled in the env file, not the command
    env_file = HOME / ".cloudinitd-remote" / RUN / "svc-0" / "boot.env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert secret in env_file.read_text()


def test_the_probe_runs_once_per_connection(target, counted):
    seen, _ = counted
    sess = session_for(target, "svc")
    assert sess.probed and sess.home == str(HOME) and sess.hostname
    wait_for_ssh(target, timeout=15, service="svc")
    assert seen == {}  # an already-probed connection is not asked again


def test_a_link_a_step_left_is_replaced_not_followed(target, tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep me\n")
    os.chmod(tmp_path, 0o755)
    step(target, f"ln -sf {victim} boot.env; ln -sf {victim} boot.script\n", tmp_path)
    out = step(target, 'echo "second=ok" > "$CLOUDINITD_EXPORT"\n', tmp_path)
    assert out == {"second": "ok"}
    assert victim.read_text() == "keep me\n"
    private = HOME / ".cloudinitd-remote" / RUN / "svc-0"
    assert not (private / "boot.env").is_symlink()


def test_no_export_then_an_export_then_none_again(target, tmp_path):
    assert step(target, "true\n", tmp_path) == {}
    assert step(target, 'echo "a=1" > "$CLOUDINITD_EXPORT"\n', tmp_path) == {"a": "1"}
    assert step(target, "true\n", tmp_path) == {}  # an earlier step's export is not reused


def test_an_export_over_the_limit_is_refused(target, tmp_path):
    script = 'head -c 1100000 /dev/zero | tr "\\0" a | sed "s/^/k=/" > "$CLOUDINITD_EXPORT"\n'
    with pytest.raises(RemoteError, match="larger than 1048576 bytes"):
        step(target, script, tmp_path)


def test_a_failing_step_keeps_its_status_and_output(target, tmp_path):
    with pytest.raises(RemoteError) as info:
        step(target, 'echo "out here"; echo "err here" >&2; echo "a=1" > "$CLOUDINITD_EXPORT";'
                     " exit 7\n", tmp_path)
    assert "exit status 7" in str(info.value)
    assert "out here" in info.value.log_tail and "err here" in info.value.log_tail


def test_a_folder_that_cannot_be_made_is_a_clear_error(target, tmp_path):
    blocker = HOME / ".cloudinitd-remote" / f"{RUN}-blocked"
    blocker.parent.mkdir(mode=0o700, exist_ok=True)
    blocker.write_text("a file where the run's folder goes\n")
    try:
        with pytest.raises(RemoteError, match="could not write the step's files"):
            run_step(target, run=f"{RUN}-blocked", service="svc", index=0, step="boot",
                     script="true\n", env={}, log_path=tmp_path / "b.log", timeout=30)
    finally:
        blocker.unlink()


def test_files_bundles_still_ship_beside_the_script(target, tmp_path):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "data").write_text("bundle data\n")
    out = run_step(target, run=RUN, service="svc", index=0, step="boot",
                   script='echo "data=$(cat bundle/data)" > "$CLOUDINITD_EXPORT"\n', env={},
                   log_path=tmp_path / "f.log", timeout=30, files=[Path(bundle)])
    assert out == {"data": "bundle data"}
