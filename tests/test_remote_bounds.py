"""What a host sends back is bounded: a runaway script or a host that floods
fills neither this machine's memory nor its disk (real sshd on 127.0.0.x)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cloudinitd.errors import RemoteError
from cloudinitd.remote import (
    SshTarget,
    channel,
    close_all,
    remove_run_dir,
    run_step,
    session_for,
    wait_for_ssh,
)
from cloudinitd.remote.session import MAX_HELPER_OUTPUT, ProbeFailed

RUN = f"bounds-{os.getpid()}"  # every sshd host here shares root's home


@pytest.fixture
def target(sshd_hosts, tmp_path):
    (host,) = sshd_hosts(1)
    target = SshTarget(host.address, host.port, host.user, host.key_path,
                       tmp_path / "known_hosts", "svc-0")
    wait_for_ssh(target, timeout=15, service="svc")
    yield target
    remove_run_dir(target, RUN)
    close_all()


def step(target: SshTarget, script: str, log: Path):
    return run_step(target, run=RUN, service="svc", index=0, step="boot", script=script,
                    env={}, log_path=log, timeout=60)


def test_output_past_the_log_limit_is_not_stored_but_its_last_lines_are_shown(
        target, tmp_path, monkeypatch):
    monkeypatch.setattr(channel, "MAX_LOG_BYTES", 1024 * 1024)
    log = tmp_path / "boot.log"
    script = ("#!/bin/sh\nhead -c 5000000 /dev/zero | tr '\\0' x\necho\n"
              "echo LAST-LINE\nexit 3\n")
    with pytest.raises(RemoteError) as caught:
        step(target, script, log)
    assert "LAST-LINE" in caught.value.log_tail  # read to the end, though not stored
    size = log.stat().st_size
    assert 1024 * 1024 <= size < 1024 * 1024 + 4096, size
    assert "output past 1 MiB is not kept" in log.read_text(errors="replace")


def test_a_script_that_floods_the_trailer_stream_fails_its_step_at_the_limit(target, tmp_path):
    # The one-shot step keeps stderr for its status and export; the script's own
    # stderr goes to its output. Writing to the outer shell's stderr (found
    # through /proc) is what a hostile or broken script could still do.
    script = ("#!/bin/sh\nouter=$(cut -d' ' -f4 /proc/$PPID/stat)\n"
              "head -c 3000000 /dev/zero > /proc/$outer/fd/2\n")
    with pytest.raises(RemoteError) as caught:
        step(target, script, tmp_path / "boot.log")
    assert f"more than {channel.MAX_TRAILER} bytes on the step's stderr" in str(caught.value)


def test_a_helper_command_that_answers_too_much_is_refused(target):
    sess = session_for(target, "svc")
    with pytest.raises(ProbeFailed, match=f"more than {MAX_HELPER_OUTPUT} bytes"):
        sess.run(f"head -c {3 * MAX_HELPER_OUTPUT} /dev/zero", timeout=30)
    assert sess.run("echo still-usable", timeout=30) == (0, "still-usable\n")
