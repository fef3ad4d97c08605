"""The live progress table: elapsed time ticks while a service runs, without new reports."""

from __future__ import annotations

import io

from rich.console import Console

from cloudinitd.cli.output import LiveProgress


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _drawn(progress: LiveProgress, console: Console) -> str:
    """What the live display would draw now (what its refresh thread renders)."""
    console.file = io.StringIO()
    console.print(progress._live.get_renderable())
    return console.file.getvalue()


def _row(text: str, service: str) -> str:
    return next(line.rstrip() for line in text.splitlines() if line.startswith(service))


def test_elapsed_time_ticks_for_running_services_and_stops_for_finished_ones():
    clock = Clock()
    console = Console(file=io.StringIO(), width=120, color_system=None)
    progress = LiveProgress(console=console, clock=clock)
    progress("slow", 0, "boot", "running boot script")
    progress("quick", None, "configuring", "1 instance(s)")
    clock.now += 2.0
    progress("quick", None, "ready", "2.0s")

    assert _row(_drawn(progress, console), "slow").endswith("2.0s")
    clock.now += 5.0  # no report meanwhile: a long script
    text = _drawn(progress, console)
    assert _row(text, "slow").endswith("7.0s")
    assert _row(text, "quick").endswith("2.0s")  # finished: its time is kept


def test_a_finished_service_keeps_its_state_when_late_instance_lines_arrive():
    # A dependent is skipped while its launch is still under way; the launch's own
    # per-instance lines then arrive from the cloud thread, after "skipped".
    clock = Clock()
    console = Console(file=io.StringIO(), width=120, color_system=None)
    progress = LiveProgress(console=console, clock=clock)
    progress("web", None, "waiting", "launching 2")
    clock.now += 1.0
    progress("web", None, "skipped", "db failed")
    clock.now += 1.0
    progress("web", 0, "launched", "mem-k-1")
    progress("web", None, "launched", "")  # the service-level line of a finished launch too
    clock.now += 3.0
    row = _row(_drawn(progress, console), "web")
    assert "skipped" in row and "db failed" in row and "launched" not in row, row
    assert row.endswith("1.0s"), row  # its time stopped when it was skipped
