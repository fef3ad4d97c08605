"""cloudinitd.host.locks: real flock contention between processes."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from cloudinitd.host import locks

HOLDER = """
import sys
from pathlib import Path
from cloudinitd.host import locks
log = Path(sys.argv[2])
print("waiting", flush=True)
with locks.exclusive(Path(sys.argv[1])):
    with log.open("a") as f:
        f.write(sys.argv[3] + "-in\\n")
    print("held", flush=True)
    sys.stdin.readline()  # hold until told
    with log.open("a") as f:
        f.write(sys.argv[3] + "-out\\n")
"""


def holder(lock: Path, log: Path, name: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", HOLDER, str(lock), str(log), name],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def test_two_processes_never_hold_the_lock_at_once(tmp_path: Path) -> None:
    lock, log = tmp_path / "the.lock", tmp_path / "log"
    first = holder(lock, log, "a")
    second = None
    try:
        assert first.stdout.readline() == "waiting\n"
        assert first.stdout.readline() == "held\n"
        second = holder(lock, log, "b")
        assert second.stdout.readline() == "waiting\n"  # and next blocks in flock
        with locks.try_exclusive(lock) as held:
            assert held is False, "held by another process: not ours"
        first.stdin.write("\n")
        first.stdin.flush()
        assert first.wait(30) == 0
        assert second.stdout.readline() == "held\n"
        second.stdin.write("\n")
        second.stdin.flush()
        assert second.wait(30) == 0
    finally:
        for proc in (first, second):
            if proc and proc.poll() is None:
                proc.kill()
                proc.wait(10)
    # b got in only after a was out.
    assert log.read_text().split() == ["a-in", "a-out", "b-in", "b-out"]
    with locks.try_exclusive(lock) as held:
        assert held is True, "released when its holders left"


def test_a_dead_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    lock, log = tmp_path / "the.lock", tmp_path / "log"
    proc = holder(lock, log, "a")
    assert proc.stdout.readline() == "waiting\n" and proc.stdout.readline() == "held\n"
    with locks.try_exclusive(lock) as held:
        assert not held
    proc.kill()
    proc.wait(10)
    with locks.try_exclusive(lock) as held:
        assert held


def test_try_exclusive_holds_for_its_block_only(tmp_path: Path) -> None:
    lock = tmp_path / "watch.lock"
    with locks.try_exclusive(lock) as held:
        assert held
        # A second open file (another thread, another watcher) is refused meanwhile.
        with locks.try_exclusive(lock) as again:
            assert again is False
    with locks.try_exclusive(lock) as held:
        assert held


def test_lock_files_are_private_and_existing_files_can_be_locked_without_creating(
        tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        with locks.exclusive(tmp_path / "made.lock"):
            pass
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "made.lock").stat().st_mode) == 0o600
    with pytest.raises(FileNotFoundError), locks.exclusive(tmp_path / "disk.img", create=False):
        pass
    assert not (tmp_path / "disk.img").exists(), "create=False never makes the file"
    image = tmp_path / "disk.img"
    image.write_bytes(b"\0" * 10)
    image.chmod(0o400)  # read-only is enough to lock it
    with locks.exclusive(image, create=False), locks.try_exclusive(image) as held:
        assert held is False
    assert image.read_bytes() == b"\0" * 10
