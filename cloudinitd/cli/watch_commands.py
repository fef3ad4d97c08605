"""`cloudinitd watch RUN`: keep one run healthy in the foreground (engine/watch.py)."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

import click

from cloudinitd.cli import output
from cloudinitd.cli.common import RUN, Env, json_option, pass_env

if TYPE_CHECKING:
    from cloudinitd.engine.watch import WatchReport

INTERRUPTED_EXIT = 130


def _show(report: WatchReport, as_json: bool, lines: bool = False) -> None:
    if as_json and lines:  # looping: one object per line and check (JSON Lines)
        sys.stdout.write(json.dumps(report.as_dict(), default=str) + "\n")
        sys.stdout.flush()
        return
    if as_json:
        output.emit_json(report.as_dict())
        return
    stamp = time.strftime("%H:%M:%S")
    click.echo(f"{stamp} run {report.run}: {report.state}"
               + (f", {len(report.actions)} action(s)" if report.actions else ""))
    for action in report.actions:
        who = action.service or ""
        if action.service and action.index is not None:
            who = f"{action.service}/{action.index}"
        click.echo(f"  {action.kind:<13} {who + ': ' if who else ''}{action.detail}")
    for name, values in sorted(report.readings.items()):
        click.echo(f"  sensor        {name}: {', '.join(f'{v:g}' for v in values) or 'none'}")
    for problem in report.errors:
        output.error(problem)


@click.command()
@click.argument("run", type=RUN)
@click.option("--interval", type=click.FloatRange(min=0.5), default=30.0, show_default=True,
              metavar="SECONDS", help="Seconds between two checks.")
@click.option("--once", is_flag=True, help="Check and repair once, then exit (0 healthy,"
                                           " 1 not).")
@json_option
@pass_env
def watch(env: Env, run: str, interval: float, once: bool, as_json: bool) -> None:
    """Keep RUN healthy: replace dead or unhealthy instances of services that `preserve`,
    scale services by their `autoscale` sensor, end the run at its `lifetime`.

    Runs in the foreground until SIGTERM or Ctrl-C (or the run's lifetime ends); one
    line per check, or with --json one JSON object per line and check. A stop during a check
    lets the launches under way answer and be recorded; the next `watch` resumes them.
    """
    from cloudinitd.engine.converge import Interrupted
    from cloudinitd.engine.watch import watch_loop, watch_tick

    if once:
        try:
            report = watch_tick(env.home, run, store=env.store)
        except Interrupted:
            output.error(f"interrupted: run `cloudinitd watch {run}` again to resume")
            raise SystemExit(INTERRUPTED_EXIT) from None
        _show(report, as_json)
        if report.state == "busy":
            output.error(f"run {run}: another watcher is checking it now")
        raise SystemExit(0 if report.ok else 1)
    stop, ticking = threading.Event(), threading.Event()
    received: list[int] = []

    def on_signal(signum: int, frame: Any) -> None:
        received.append(signum)
        stop.set()
        if ticking.is_set():  # mid-check: stop launching, settle what is under way
            raise KeyboardInterrupt

    old = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        if not as_json:
            output.info(f"watching run {run} every {interval:g}s (Ctrl-C or SIGTERM stops)")
        last = watch_loop(env.home, run, interval=interval, stop=stop, ticking=ticking,
                          store=env.store, on_report=lambda r: _show(r, as_json, lines=True))
    except (Interrupted, KeyboardInterrupt):
        output.error(f"stopped during a check; `cloudinitd watch {run}` resumes it")
        raise SystemExit(0 if received and received[-1] == signal.SIGTERM
                         else INTERRUPTED_EXIT) from None
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    if last is not None and last.state == "terminated" and not as_json:
        output.info(f"run {run} is terminated; nothing left to watch")


COMMANDS = [watch]
