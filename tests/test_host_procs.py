"""cloudinitd.host.procs on real child processes: alive, ours, pid reuse, zombies, stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from cloudinitd import homeshare_procs
from cloudinitd.host import procs
from cloudinitd.host.waiting import wait_until


@pytest.fixture
def spawn() -> Iterator:
    """Start real processes; whatever is still running at the end is killed and reaped."""
    started: list[subprocess.Popen] = []

    def start(*argv: str, **kw) -> subprocess.Popen:
        proc = subprocess.Popen(list(argv), **kw)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)  # one procs reaped already answers at once


def token() -> str:
    """A sleep duration nobody else on the machine is using (sleep accepts decimals)."""
    return f"3600.{uuid.uuid4().int % 10**9:09d}"


def test_find_names_a_live_process_by_pid_and_command_line(spawn) -> None:
    t = token()
    child = spawn("sleep", t)
    found = wait_until(lambda: procs.find(child.pid, "sleep", t), 10)
    assert found is not None and found.pid == child.pid
    assert found.created == psutil.Process(child.pid).create_time()
    assert procs.find(child.pid, "sleep", "qemu") is None, "every needle must match"
    assert procs.find(child.pid, t[:-1])  # a substring matches anywhere...
    assert procs.find(child.pid, t, whole=True)
    assert procs.find(child.pid, t[:-1], whole=True) is None  # ...but not as a whole argument
    assert procs.find(None, "sleep") is None and procs.find(0) is None
    assert procs.find(-1) is None


def test_a_trailing_space_needle_matches_the_last_argument_but_no_longer_one(spawn) -> None:
    # sshd's config check: "-f CONFIG " must not match "-f CONFIG2".
    code = "import sys, time; print('up', flush=True); time.sleep(60)"
    last = spawn(sys.executable, "-c", code, "sshd", "-f", "/x/sshd_config",
                 stdout=subprocess.PIPE)
    longer = spawn(sys.executable, "-c", code, "sshd", "-f", "/x/sshd_config2", "-E", "log",
                   stdout=subprocess.PIPE)
    assert last.stdout.readline() == b"up\n" and longer.stdout.readline() == b"up\n"
    assert homeshare_procs.is_our_sshd(last.pid, Path("/x/sshd_config"))
    assert not homeshare_procs.is_our_sshd(longer.pid, Path("/x/sshd_config"))
    assert homeshare_procs.is_our_sshd(longer.pid, Path("/x/sshd_config2"))
    assert not homeshare_procs.is_our_sshd(last.pid, Path("/x/sshd_conf"))


def test_a_reused_pid_is_not_the_process_we_found(spawn) -> None:
    child = spawn("sleep", token())
    # Until the child has exec()ed, its command line is still this Python's.
    found = wait_until(lambda: procs.find(child.pid, "sleep"), 10)
    assert found is not None and procs.alive(found)
    # The same pid with another start time: what a later process reusing the pid looks like.
    reused = procs.Proc(found.pid, found.created - 5)
    assert not procs.alive(reused)
    assert not procs.send(reused, signal.SIGKILL), "a reused pid must never be signalled"
    assert child.poll() is None and procs.alive(found)
    assert procs.alive(child.pid), "by pid alone it is alive"


def test_a_zombie_counts_as_gone(spawn) -> None:
    child = spawn("true")
    # Not reaped: it stays a zombie until we wait for it.
    assert wait_until(lambda: psutil.Process(child.pid).status() == psutil.STATUS_ZOMBIE, 10)
    assert not procs.alive(child.pid)
    assert procs.find(child.pid) is None
    assert homeshare_procs.alive(child.pid) is False


def test_stop_terminates_waits_and_reaps_our_child(spawn) -> None:
    child = spawn("sleep", token())
    # Until the child has exec()ed, its command line is still this Python's.
    found = wait_until(lambda: procs.find(child.pid, "sleep"), 10)
    assert found is not None
    assert procs.stop(found, grace=10)
    assert not procs.alive(found) and not procs.alive(child.pid)
    with pytest.raises(ProcessLookupError):  # reaped: no zombie left under this pid
        os.kill(child.pid, 0)
    assert not procs.send(found), "a gone process takes no signal"


def test_stop_kills_what_ignores_sigterm(spawn) -> None:
    code = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ignoring', flush=True); time.sleep(60)")
    child = spawn(sys.executable, "-c", code, stdout=subprocess.PIPE)
    assert child.stdout.readline() == b"ignoring\n"
    found = procs.find(child.pid, "SIG_IGN")
    assert found is not None
    assert not procs.wait_gone(found, 0.3), "SIGTERM is ignored: still there"
    assert procs.stop(found, grace=0.5, kill_wait=10)
    assert not procs.alive(found)


def test_wait_gone_sees_an_exit(spawn) -> None:
    child = spawn(sys.executable, "-c", "import sys; sys.stdin.read()", stdin=subprocess.PIPE)
    # A vfork()ed child lets Popen return before exec has set up its command line.
    found = wait_until(lambda: procs.find(child.pid, "sys.stdin.read()"), 10)
    assert found is not None
    assert not procs.wait_gone(found, 0.2)
    child.stdin.close()  # it reads EOF and exits
    assert procs.wait_gone(found, 30)


def test_descendants_are_the_whole_tree(spawn) -> None:
    t = token()
    shell = spawn("sh", "-c", f"sleep {t} & sh -c 'sleep {t}; true' & wait")
    # sh, then sleep + (sh -> sleep): three below the top shell.
    tree = wait_until(lambda: len(procs.descendants(shell.pid)) == 3
                      and procs.descendants(shell.pid), 10)
    assert tree and len(tree) == 3
    names = sorted(psutil.Process(pid).name() for pid in tree)
    assert names == ["sh", "sleep", "sleep"]
    for pid in tree:
        os.kill(pid, signal.SIGKILL)
    shell.wait(10)
    assert procs.descendants(shell.pid) == [], "a gone process has no tree"


def test_stop_all_of_a_tree_ends_the_daemon_and_what_it_forked(spawn) -> None:
    t = token()
    # One child ignores SIGTERM (a stuck connection): it must be killed, not waited on.
    code = ("import signal, subprocess, sys, time; "
            f"subprocess.Popen(['sleep', '{t}']); "
            "subprocess.Popen([sys.executable, '-c', 'import signal, time; "
            "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(3600)']); "
            "print('up', flush=True); time.sleep(3600)")
    daemon = spawn(sys.executable, "-c", code, stdout=subprocess.PIPE)
    assert daemon.stdout.readline() == b"up\n"
    assert wait_until(lambda: len(procs.descendants(daemon.pid)) == 2, 10)
    tree = procs.tree(daemon.pid)
    assert sorted(p.pid for p in tree) == sorted([daemon.pid, *procs.descendants(daemon.pid)])
    assert procs.stop_all(tree, grace=0.5, kill_wait=10)
    assert not any(procs.alive(p) for p in tree)
    with pytest.raises(ProcessLookupError):  # our own child is reaped too
        os.kill(daemon.pid, 0)


def test_with_argument_finds_processes_by_a_command_line_fragment(spawn) -> None:
    t = token()
    child = spawn("sleep", t)
    assert wait_until(lambda: procs.with_argument(t), 10) == [child.pid]
    child.kill()
    child.wait(10)
    assert procs.with_argument(t) == []


def test_holding_open_finds_who_has_a_file_under_a_folder_open(spawn, tmp_path) -> None:
    inside = tmp_path / "images" / "disk.qcow2"
    inside.parent.mkdir()
    inside.write_bytes(b"x")
    code = (f"f = open({str(inside)!r}, 'rb'); print('open', flush=True); "
            "import time; time.sleep(60)")
    child = spawn(sys.executable, "-c", code, stdout=subprocess.PIPE)
    assert child.stdout.readline() == b"open\n"
    assert child.pid in procs.holding_open(f"{tmp_path / 'images'}/")
    assert child.pid not in procs.holding_open(f"{tmp_path / 'other'}/")
    child.kill()
    child.wait(10)
    assert child.pid not in procs.holding_open(f"{tmp_path / 'images'}/")


def test_holding_open_counts_folders_and_deleted_files_too(spawn, tmp_path) -> None:
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    doomed = folder / "disk.raw"
    doomed.write_bytes(b"x")
    hold = "import os, sys, time; {}; print('open', flush=True); time.sleep(60)"
    on_folder = spawn(sys.executable, "-c", hold.format(f"os.open({str(folder / 'sub')!r}, 0)"),
                      stdout=subprocess.PIPE)
    on_file = spawn(sys.executable, "-c", hold.format(f"f = open({str(doomed)!r}, 'rb')"),
                    stdout=subprocess.PIPE)
    assert on_folder.stdout.readline() == b"open\n" and on_file.stdout.readline() == b"open\n"
    doomed.unlink()  # still open: still pins the folder's disk space
    holders = procs.holding_open(f"{folder}/")
    assert on_folder.pid in holders and on_file.pid in holders
