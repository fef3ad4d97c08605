"""Lease keepers (providers/lease.py): real detached processes on this machine."""

from __future__ import annotations

import os
import time
from pathlib import Path

from cloudinitd.providers.lease import MARK, start_keeper, stop_keeper


def alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def wait_gone(pid: int, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not alive(pid)


def keeper(tmp_path: Path, expires: float, instance: str = "i-test") -> tuple[int, Path, Path]:
    watch = tmp_path / instance
    watch.mkdir()
    log = tmp_path / f"{instance}.log"
    pid = start_keeper("static", "static", {}, tmp_path / "home", instance, expires, watch, log)
    return pid, watch, log


def test_a_keeper_is_detached_and_leaves_when_its_instance_goes_first(tmp_path):
    pid, watch, log = keeper(tmp_path, time.time() + 3600)
    try:
        assert alive(pid)
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert MARK.encode() in cmdline and b"i-test" in cmdline
        assert os.getsid(pid) != os.getsid(0), "not in the caller's session: its Ctrl-C misses it"
        watch.rmdir()
        assert wait_gone(pid)
        assert "gone before its lease end" in log.read_text()
    finally:
        stop_keeper(pid, "i-test")


def test_at_the_lease_end_it_terminates_through_the_provider(tmp_path):
    pid, _, log = keeper(tmp_path, time.time() + 1)
    assert wait_gone(pid)
    assert "lease over" in log.read_text() and "terminated" in log.read_text()


def test_stop_keeper_ends_only_the_keeper_of_that_instance(tmp_path):
    pid, _, _ = keeper(tmp_path, time.time() + 3600)
    try:
        stop_keeper(pid, "i-other")
        time.sleep(0.2)
        assert alive(pid), "a pid whose command line names another instance is left alone"
        stop_keeper(os.getpid(), "i-test")  # not a keeper at all: nothing happens
        stop_keeper(pid, "i-test")
        assert wait_gone(pid)
    finally:
        if alive(pid):
            os.kill(pid, 9)
