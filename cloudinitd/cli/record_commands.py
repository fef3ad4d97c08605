"""Commands over the records: list, history, logs, clean, clouds."""

from __future__ import annotations

import sys
import time
from typing import Any

import click
from rich.text import Text

from cloudinitd.cli import output
from cloudinitd.cli.common import RUN, Env, complete_service, json_option, pass_env
from cloudinitd.textsafe import for_terminal


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def print_table(headers: list[str], rows: list[list[Any]], title: str | None = None) -> None:
    """A rich table on a terminal; plain aligned columns (scripts, `column -t`) otherwise."""
    cells = [[str(c) if c not in (None, "") else "-" for c in row] for row in rows]
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(*headers, title=title, box=None, header_style="bold")
        for row in cells:  # event messages can carry guest text: sanitized, never markup
            table.add_row(*(Text(for_terminal(c)) for c in row))
        Console(highlight=False).print(table)
        return
    if title:
        click.echo(title)
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    for row in [headers, *cells]:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


@click.command(name="list")
@json_option
@pass_env
def list_runs(env: Env, as_json: bool) -> None:
    """Every recorded run with its status and live instance count."""
    from cloudinitd import api

    runs = api.runs(home=env.home)
    if as_json:
        output.emit_json([r.as_dict() for r in runs])
        return
    if not runs:
        click.echo("no runs")
        return
    print_table(["RUN", "STATUS", "LIVE", "CREATED", "PLAN"],
                [[r.name, r.status, r.live_instances, _when(r.created), r.plan_path]
                 for r in runs])


@click.command()
@click.argument("run", type=RUN)
@json_option
@pass_env
def history(env: Env, run: str, as_json: bool) -> None:
    """Every instance RUN ever launched, and its events."""
    from cloudinitd import api

    data = api.history(run, home=env.home).as_dict()
    if as_json:
        output.emit_json(data)
        return
    print_table(["SERVICE", "CLOUD", "INSTANCE", "STATE", "LAUNCHED", "TERMINATED"],
                [[f"{i['service']}/{i['idx']}", i["cloud"], i["instance_id"], i["state"],
                  _when(i["launched"]), _when(i["terminated"])] for i in data["instances"]],
                title="instances")
    click.echo()
    print_table(["TIME", "EVENT", "SERVICE", "MESSAGE"],
                [[_when(ev["ts"]), ev["kind"],
                  (ev["service"] or "") + (f"/{ev['idx']}" if ev["idx"] is not None else ""),
                  ev["message"]] for ev in data["events"]],
                title="events")


@click.command()
@click.argument("run", type=RUN)
@click.argument("service", required=False, shell_complete=complete_service)
@json_option
@pass_env
def logs(env: Env, run: str, service: str | None, as_json: bool) -> None:
    """The boot / ready / terminate logs of RUN (or of one SERVICE)."""
    from cloudinitd import api

    files = api.logs(run, service, home=env.home)
    if as_json:
        output.emit_json([{"file": f.path, "text": f.text} for f in files])
        return
    if not files:
        click.echo(f"no logs for {run}{' ' + service if service else ''}")
    # A terminal would obey escape sequences the instance wrote; a pipe gets the log as is.
    shown = for_terminal if sys.stdout.isatty() else str
    for f in files:
        click.echo(f"==> {f.path} <==")
        click.echo(shown(f.text), nl=False)


@click.command()
@click.argument("run", type=RUN, required=False)
@json_option
@pass_env
def clean(env: Env, run: str | None, as_json: bool) -> None:
    """Remove leftovers: with RUN, terminate whatever of it still lives (found by tag too)
    and forget it; without, terminate runs whose lifetime is over and remove local
    containers/VMs whose run is gone."""
    from cloudinitd import api

    result = api.clean(run, home=env.home, on_note=output.info)
    for problem in result.errors:
        output.error(problem)
    if not result.ok:
        raise SystemExit(1)
    if run:
        report: dict[str, Any] = {
            "run": run, "forgotten": result.forgotten,
            "terminated": [{"service": i.service, "index": i.index, "cloud": i.cloud,
                            "instance_id": i.instance_id} for i in result.removed]}
    else:
        report = {"expired": list(result.expired), "stale": list(result.stale)}
    if as_json:
        output.emit_json(report)
    elif run:
        click.echo(f"run {run}: {len(report['terminated'])} leftover instance(s) terminated;"
                   " run forgotten")
    else:
        for name in report["expired"]:
            click.echo(f"run {name}: lifetime over, terminated")
        click.echo(f"removed {len(report['stale'])} stale local instance(s)")


@click.command()
@click.option("--check", is_flag=True, help="Verify each cloud with one cheap call.")
@json_option
@pass_env
def clouds(env: Env, check: bool, as_json: bool) -> None:
    """The cloud catalog ($CLOUDINITD_HOME/clouds.yml)."""
    from cloudinitd import api

    found = api.clouds(home=env.home, check=check)
    rows = [{"name": c.name, "provider": c.provider, "endpoint": c.endpoint,
             "region": c.region, "credentials": c.credentials, "source": c.source}
            for c in found]
    if check:  # `ok` and the check's summary or failure in `check`, as always
        for row, cloud in zip(rows, found, strict=True):
            row.update(ok=cloud.ok, check=cloud.error or cloud.check)
    if as_json:
        output.emit_json(rows)
    else:
        if not rows:
            click.echo(f"no clouds in {env.home / 'clouds.yml'} (the built-in `local` and"
                       " `qemu` clouds need no entry)")
        for row in rows:
            where = row["endpoint"] or row["region"] or ""
            status = ("  ok: " if row.get("ok") else "  FAILED: ") + str(row["check"]) \
                if check else ""
            click.echo(f"{row['name']:<16} {row['provider']:<8} {where}{status}")
    if check and not all(row["ok"] for row in rows):
        raise SystemExit(1)


COMMANDS = [list_runs, history, logs, clean, clouds]
