"""Hostile file names and a guard against hangs, shared by the hostile-input tests.

`HOSTILE` is every kind of name a plan may give where a file belongs;
`hostile_folder` makes the relative ones in a folder; `within` fails a call
that hangs (a FIFO opened for reading) instead of stalling the test run.
"""

from __future__ import annotations

import os
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


def within(seconds: int, fn: Callable[..., Any], *args: Any) -> Any:
    """Run fn; a hang (a FIFO opened for reading) fails the test instead of stalling it."""
    def alarm(*_: object) -> None:
        raise Hang(f"still running after {seconds} s")
    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        return fn(*args)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
