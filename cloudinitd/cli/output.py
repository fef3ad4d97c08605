"""What the CLI prints: JSON on stdout, progress and errors on stderr.

Progress is a live table on a terminal (rich) and plain timestamped lines
otherwise, so logs of CI jobs and cron runs stay readable.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from cloudinitd.engine.converge import RunResult
from cloudinitd.textsafe import for_terminal

err_console = Console(stderr=True, highlight=False)


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def error(message: str) -> None:
    # Messages carry console and step-log tails written inside instances.
    for line in for_terminal(str(message)).splitlines() or [""]:
        sys.stderr.write(f"cloudinitd: error: {line}\n")


def info(message: str) -> None:
    sys.stderr.write(for_terminal(message) + "\n")
    sys.stderr.flush()


class NoProgress:
    """`-q`: the same interface, showing nothing."""

    def __call__(self, service: str, index: int | None, state: str, detail: str) -> None:
        return None

    def __enter__(self) -> NoProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class PlainProgress:
    """One line per state change: `[  4.1s] compute-1 boot: running boot script`."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self._lock = threading.Lock()

    def __call__(self, service: str, index: int | None, state: str, detail: str) -> None:
        who = service if index is None else f"{service}-{index}"
        line = f"[{time.monotonic() - self.t0:6.1f}s] {who} {state}"
        with self._lock:
            info(f"{line}: {detail}" if detail else line)

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class LiveProgress:
    """A table of services with their state, last detail and elapsed time."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.rows: dict[str, list[Any]] = {}
        self._lock = threading.Lock()
        self._live = Live(self._table(), console=err_console, refresh_per_second=4,
                          transient=False)

    def _table(self) -> Table:
        table = Table(box=None, pad_edge=False)
        for col in ("service", "state", "detail", "elapsed"):
            table.add_column(col)
        now = time.monotonic()
        for name, (state, detail, since) in self.rows.items():
            style = {"ready": "green", "failed": "red", "skipped": "yellow"}.get(state, "")
            table.add_row(name, f"[{style}]{state}[/]" if style else state, detail[:70],
                          f"{now - since:5.1f}s")
        return table

    def __call__(self, service: str, index: int | None, state: str, detail: str) -> None:
        with self._lock:
            since = self.rows.get(service, [None, None, time.monotonic()])[2]
            label = state if index is None else f"{state} [{index}]"
            self.rows[service] = [label, detail, since]
            self._live.update(self._table())

    def __enter__(self) -> LiveProgress:
        self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.__exit__(None, None, None)


Progress = NoProgress | PlainProgress | LiveProgress


def progress_for_terminal(quiet: bool = False) -> Progress:
    """A progress sink that is also a context manager (the live table needs one)."""
    if quiet:
        return NoProgress()
    return LiveProgress() if sys.stderr.isatty() else PlainProgress()


def print_failures(result: RunResult) -> None:
    """Each failed service with its step and the tail of its log; then what was skipped."""
    for svc in result.failures():
        error(f"service {svc.name} failed at step {svc.step}: {svc.error}")
        if svc.log_path:
            info(f"  log: {svc.log_path}")
        for line in (svc.log_tail or "").rstrip().splitlines()[-20:]:
            info(f"  | {line}")
    skipped = [s.name for s in result.services.values() if s.state == "skipped"]
    if skipped:
        info(f"not run because a dependency failed: {', '.join(sorted(skipped))}")
