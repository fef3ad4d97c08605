"""Processes this machine runs for us (QEMU, apt-cacher-ng, lease keepers, the home
share's sshd): is it alive, is it the one we started, stop it, wait until it is gone.

Through psutil rather than reading /proc by hand. A pid alone is not proof: pids are
reused, so a process is found by its pid *and* its command line (`find`), and from then
on named by pid and start time (`Proc`): a later process with the same pid is a
different `Proc`, and is never signalled in its place. A zombie (exited, not yet reaped
by a parent that may never reap it, e.g. a daemonized QEMU) counts as gone.
"""

from __future__ import annotations

import contextlib
import os
import signal as signals
from dataclasses import dataclass

import psutil

from cloudinitd.host.waiting import wait_until


@dataclass(frozen=True)
class Proc:
    """One process for good: its pid and its start time (psutil's create_time)."""

    pid: int
    created: float


def _live(pid: int) -> psutil.Process | None:
    """The non-zombie process with this pid, if any."""
    try:
        proc = psutil.Process(pid)
        if proc.status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
            return None
    except (psutil.Error, ValueError):  # ValueError: a negative pid
        return None
    return proc


def _same(p: Proc) -> psutil.Process | None:
    """`p` itself if it still runs (not a zombie, not a reused pid)."""
    proc = _live(p.pid)
    try:
        return proc if proc is not None and proc.create_time() == p.created else None
    except psutil.Error:
        return None


def command_line(proc: psutil.Process) -> list[str]:
    """Its arguments; [] when they cannot be read (gone, a zombie, not ours to read).

    A process that rewrote its title (sshd: "sshd: /usr/sbin/sshd -D -f CONF
    [listener]") answers with the title's words.
    """
    try:
        return proc.cmdline()
    except psutil.Error:
        return []


def find(pid: int | None, *needles: str, whole: bool = False) -> Proc | None:
    """The live process `pid` if its command line holds every needle, else None.

    A needle matches anywhere in the arguments each followed by a space, or with `whole=True`
    only as one whole argument (an instance id must not match a longer one).
    """
    if not pid or pid < 0:
        return None
    proc = _live(pid)
    if proc is None:
        return None
    argv = command_line(proc)
    # Each argument followed by a space, as /proc ends each with a NUL: a needle "X "
    # then matches X as the last argument too, and never a longer "XY".
    text = "".join(f"{arg} " for arg in argv)
    if not all((n in argv) if whole else (n in text) for n in needles):
        return None
    try:
        return Proc(pid, proc.create_time())
    except psutil.Error:
        return None


def alive(target: int | Proc) -> bool:
    """A pid: some live, non-zombie process has it. A `Proc`: that very process runs."""
    if isinstance(target, Proc):
        return _same(target) is not None
    return _live(target) is not None


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (children, theirs, ...); [] when `pid` is gone."""
    try:
        return [child.pid for child in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


def with_argument(needle: str) -> list[int]:
    """Pids of live processes whose command line (joined by spaces) contains `needle`."""
    found = []
    for proc in psutil.process_iter():
        if needle in " ".join(command_line(proc)):
            found.append(proc.pid)
    return found


def holding_open(prefix: str) -> list[int]:
    """Pids of processes holding anything whose path starts with `prefix` open (a file,
    a folder, a file deleted since: each still pins an image's disk).

    Read from /proc/PID/fd by hand, not psutil's open_files(): that one lists only
    regular files that still exist, and reads each descriptor's fdinfo besides.
    """
    found = []
    for pid in psutil.pids():
        with contextlib.suppress(OSError):
            for fd in os.scandir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(fd.path).startswith(prefix):
                        found.append(pid)
                        break
    return found


def send(p: Proc, sig: int = signals.SIGTERM) -> bool:
    """Signal `p` if it is still that process; whether the signal went out."""
    proc = _same(p)
    if proc is None:
        return False
    try:
        proc.send_signal(sig)
    except psutil.Error:
        return False
    return True


def _reap(pid: int) -> None:
    """Collect `pid` if it is our own exited child, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def wait_gone(p: Proc, timeout: float, interval: float = 0.05) -> bool:
    """Wait up to `timeout` seconds for `p` to exit (reaping it if it is our child);
    whether it is gone."""

    def gone() -> bool:
        _reap(p.pid)
        return not alive(p)

    return wait_until(gone, timeout, interval)


def stop(p: Proc, *, grace: float = 10.0, kill_wait: float = 5.0) -> bool:
    """SIGTERM, up to `grace` seconds to exit, then SIGKILL and up to `kill_wait` more;
    whether it is gone."""
    return stop_all([p], grace=grace, kill_wait=kill_wait)


def tree(pid: int) -> list[Proc]:
    """`pid` and every process below it, each named for good (gone ones left out)."""
    found = (find(child) for child in [*descendants(pid), pid])
    return [p for p in found if p is not None]


def stop_all(targets: list[Proc], *, grace: float = 10.0, kill_wait: float = 5.0) -> bool:
    """`stop` for several processes at once (a daemon and the children it forked): one
    grace period for all, so stopping N processes never takes N times as long."""

    def all_gone() -> bool:
        for p in targets:
            _reap(p.pid)
        return not any(alive(p) for p in targets)

    for p in targets:
        send(p, signals.SIGTERM)
    if wait_until(all_gone, grace, 0.05):
        return True
    for p in targets:
        send(p, signals.SIGKILL)
    return wait_until(all_gone, kill_wait, 0.05)
