"""Hostile file names and a guard against hangs, shared by the hostile-input tests.

`HOSTILE` is every kind of name a plan may give where a file belongs;
`FILE_FIELDS` / `ORIGINAL_FIELDS` are where a plan (new format, original
TOP.conf) names a file; `hostile_folder` makes the relative ones in a folder;
`within` fails a call that hangs (a FIFO opened for reading) or reads without
end instead of stalling the test run or getting it OOM-killed.
"""

from __future__ import annotations

import os
import resource
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

# name -> the value written into the plan (relative ones are made in the plan folder)
HOSTILE = {
    "long": "x" * 300,  # longer than a file name may be: every stat() fails
    "deep": "d/" * 2100 + "x",  # longer than a path may be
    "fifo": "fifo",  # open() would wait for a writer forever
    "devzero": "/dev/zero",  # a read never ends
    "folder": "folder",  # a folder where a file belongs
    "loop": "loop",  # a symlink to itself
}


# field -> the service's lines; the hostile value's line is the last one
FILE_FIELDS = {
    "boot": ["host: 127.0.0.1", "boot: {v}"],
    "ready": ["host: 127.0.0.1", "boot: b.sh", "ready: {v}"],
    "terminate": ["host: 127.0.0.1", "boot: b.sh", "terminate: {v}"],
    "files": ["host: 127.0.0.1", "boot:", "  script: b.sh", "  files: [{v}]"],
    "hosts-file": ["boot: b.sh", "hosts: {{file: {v}}}"],
    # A missing key is accepted at load (tests/test_hostile_paths.py); these are not.
    "ssh_key": ["host: 127.0.0.1", "boot: b.sh", "ssh_key: {v}"],
}
# A self-contained original plan (no env. references): every file it names exists.
ORIGINAL = {
    "top.conf": "[runlevels]\nlevel1: level1.conf\n",
    "level1.conf": "[svc-db]\nhostname: 127.0.0.9\nssh_username: deploy\nbootpgm: boot.sh\n"
                   "readypgm: ready.sh\nterminatepgm: term.sh\nbootconf: db.json\n"
                   "deps: deps.conf\nlocalsshkeypath: id_key\n",
    "deps.conf": "[deps]\nport: 5432\n",
    "db.json": '{"port": "${port}"}\n',
    "boot.sh": "#!/bin/sh\ntrue\n", "ready.sh": "#!/bin/sh\ntrue\n",
    "term.sh": "#!/bin/sh\ntrue\n", "id_key": "not read at import\n",
}
ORIGINAL_FIELDS = {"level1": "top.conf", **{k: "level1.conf" for k in (
    "bootpgm", "readypgm", "terminatepgm", "bootconf", "deps", "localsshkeypath")}}

# Files that are not bytes: what `make_special` makes.
FIFO, FOLDER, LOOP = "fifo", "folder", "loop"
# The relative names of HOSTILE and what each is.
SPECIAL_FILES = {"fifo": FIFO, "folder": FOLDER, "loop": LOOP}


def make_special(path: Path, kind: str) -> None:
    """A FIFO, a folder holding one file, or a symlink to itself at `path`."""
    if kind == FIFO:
        os.mkfifo(path)
    elif kind == FOLDER:
        path.mkdir()
        (path / "f").write_text("x\n")
    elif kind == LOOP:
        path.symlink_to(path.name)
    else:
        raise ValueError(f"no special file of kind {kind!r}")


def hostile_folder(folder: Path) -> None:
    """The relative names of HOSTILE (a FIFO, a folder, a loop of links) and a `b.sh`."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, kind in SPECIAL_FILES.items():
        make_special(folder / name, kind)
    (folder / "b.sh").write_text("true\n")


class Hang(Exception):
    pass


# What a guarded call may add to this process's address space. A read that never
# ends (/dev/zero) then fails as MemoryError in this test instead of the kernel's
# OOM killer ending the whole run (it did once: 23 GB). Room for the threads a
# connection starts (an 8 MiB stack and a 64 MiB malloc arena each, reserved).
MEMORY_ROOM = 2 * 1024**3


def _address_space() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def within(seconds: int, fn: Callable[..., Any], *args: Any) -> Any:
    """Run fn; a hang (a FIFO opened for reading) fails the test instead of stalling
    it, and an endless read fails it with MemoryError (MEMORY_ROOM) instead of
    getting the test run OOM-killed."""
    def alarm(*_: object) -> None:
        raise Hang(f"still running after {seconds} s")
    old = signal.signal(signal.SIGALRM, alarm)
    limits = resource.getrlimit(resource.RLIMIT_AS)
    cap = _address_space() + MEMORY_ROOM
    if limits[1] != resource.RLIM_INFINITY:
        cap = min(cap, limits[1])
    resource.setrlimit(resource.RLIMIT_AS, (cap, limits[1]))
    signal.alarm(seconds)
    try:
        return fn(*args)
    finally:
        signal.alarm(0)
        resource.setrlimit(resource.RLIMIT_AS, limits)
        signal.signal(signal.SIGALRM, old)
