"""What the CLI prints: JSON on stdout, progress and errors on stderr.

Progress is a live table on a terminal (rich) and plain timestamped lines
otherwise, so logs of CI jobs and cron runs stay readable.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from cloudinitd.textsafe import for_terminal

if TYPE_CHECKING:  # the engine, rich: imported when used, so `--help` starts fast
    from rich.table import Table

    from cloudinitd.api import RunOutcome


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
    """A table of services with their state, last detail and elapsed time.

    The table is built when rich draws it (twice a second, from its own
    thread), not when a service reports: so a service whose script runs for
    minutes shows its elapsed time ticking, and a report costs no rendering.
    Finished services keep the elapsed time they finished with.
    """

    DONE = ("ready", "failed", "skipped")

    def __init__(self, console: Any = None, clock: Any = time.monotonic) -> None:
        self.clock = clock
        self.t0 = clock()
        # service -> [state label, detail, started, finished or None]
        self.rows: dict[str, list[Any]] = {}
        self._lock = threading.Lock()
        from rich.console import Console
        from rich.live import Live

        self._live = Live(self, console=console or Console(stderr=True, highlight=False),
                          refresh_per_second=2, transient=False)

    def __rich__(self) -> Table:
        with self._lock:
            return self._table()

    def _table(self) -> Table:
        from rich.table import Table

        table = Table(box=None, pad_edge=False)
        for col in ("service", "state", "detail", "elapsed"):
            table.add_column(col)
        now = self.clock()
        for name, (state, detail, since, until) in self.rows.items():
            style = {"ready": "green", "failed": "red", "skipped": "yellow"}.get(state, "")
            table.add_row(name, f"[{style}]{state}[/]" if style else state, detail[:70],
                          f"{(until or now) - since:5.1f}s")
        return table

    def __call__(self, service: str, index: int | None, state: str, detail: str) -> None:
        with self._lock:
            now = self.clock()
            row = self.rows.get(service)
            if row is not None and row[3] is not None:
                # Finished (ready, failed, skipped) is final for this command: a launch
                # still under way when its service was skipped reports afterwards.
                return
            since = row[2] if row is not None else now
            label = state if index is None else f"{state} [{index}]"
            until = now if index is None and state in self.DONE else None
            self.rows[service] = [label, detail, since, until]

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


def print_failures(result: RunOutcome) -> None:
    """Each failed service with its step and the tail of its log; then what was skipped."""
    for svc in result.failed:
        error(f"service {svc.name} failed at step {svc.step}: {svc.error}")
        if svc.log_path:
            info(f"  log: {svc.log_path}")
        for line in (svc.log_tail or "").rstrip().splitlines()[-20:]:
            info(f"  | {line}")
    skipped = [s.name for s in result.skipped]
    if skipped:
        info(f"not run because a dependency failed: {', '.join(sorted(skipped))}")
