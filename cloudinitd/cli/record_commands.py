"""Commands over the records: list, history, logs, clean, clouds."""

from __future__ import annotations

import shutil
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
    runs = []
    for row in env.store.runs():
        row["live_instances"] = len(env.store.instances(row["name"]))
        runs.append(row)
    if as_json:
        output.emit_json(runs)
        return
    if not runs:
        click.echo("no runs")
        return
    print_table(["RUN", "STATUS", "LIVE", "CREATED", "PLAN"],
                [[r["name"], r["status"], r["live_instances"], _when(r["created"]),
                  r["plan_path"]] for r in runs])


@click.command()
@click.argument("run", type=RUN)
@json_option
@pass_env
def history(env: Env, run: str, as_json: bool) -> None:
    """Every instance RUN ever launched, and its events."""
    env.store.run(run)
    instances = env.store.instances(run, live_only=False)
    events = env.store.events(run)
    if as_json:
        output.emit_json({"run": run, "instances": instances, "events": events})
        return
    print_table(["SERVICE", "CLOUD", "INSTANCE", "STATE", "LAUNCHED", "TERMINATED"],
                [[f"{i['service']}/{i['idx']}", i["cloud"], i["instance_id"], i["state"],
                  _when(i["launched"]), _when(i["terminated"])] for i in instances],
                title="instances")
    click.echo()
    print_table(["TIME", "EVENT", "SERVICE", "MESSAGE"],
                [[_when(ev["ts"]), ev["kind"],
                  (ev["service"] or "") + (f"/{ev['idx']}" if ev["idx"] is not None else ""),
                  ev["message"]] for ev in events],
                title="events")


@click.command()
@click.argument("run", type=RUN)
@click.argument("service", required=False, shell_complete=complete_service)
@json_option
@pass_env
def logs(env: Env, run: str, service: str | None, as_json: bool) -> None:
    """The boot / ready / terminate logs of RUN (or of one SERVICE)."""
    env.store.run(run)
    if service:
        from cloudinitd.engine.access import dependency_order

        known = set(env.store.services(run)) | {
            i["service"] for i in env.store.instances(run, live_only=False)}
        if service not in known:
            from cloudinitd.errors import UsageError

            names = dependency_order(env.store, env.home, run, known)
            raise UsageError(f"run {run!r} has no service {service!r}; services: "
                             + (", ".join(names) or "none"))
    folder = env.store.run_dir(run) / "logs"
    files = sorted(folder.glob(f"{service}-*.log" if service else "*.log"))
    if service:
        files = [f for f in files if f.name.rsplit("-", 1)[0] == service]
    if as_json:
        output.emit_json([{"file": str(f), "text": f.read_text(errors="replace")} for f in files])
        return
    if not files:
        click.echo(f"no logs for {run}{' ' + service if service else ''}")
    # A terminal would obey escape sequences the instance wrote; a pipe gets the log as is.
    shown = for_terminal if sys.stdout.isatty() else str
    for f in files:
        click.echo(f"==> {f} <==")
        click.echo(shown(f.read_text(errors="replace")), nl=False)


@click.command()
@click.argument("run", type=RUN, required=False)
@json_option
@pass_env
def clean(env: Env, run: str | None, as_json: bool) -> None:
    """Remove leftovers: with RUN, terminate whatever of it still lives (found by tag too)
    and forget it; without, terminate runs whose lifetime is over and remove local
    containers/VMs whose run is gone."""
    from cloudinitd.engine.context import open_run_without_plan
    from cloudinitd.engine.terminate import TerminateResult, destroy_instances

    report: dict[str, Any] = {}
    if run:
        ctx = open_run_without_plan(env.home, env.store, run)
        result = TerminateResult(run)
        destroy_instances(ctx, env.store.instances(run), result, sweep=True)
        if result.errors:
            for problem in result.errors:
                output.error(problem)
            raise SystemExit(1)
        env.store.delete_run(run)
        shutil.rmtree(env.store.run_dir(run), ignore_errors=True)
        report = {"run": run, "terminated": result.terminated, "forgotten": True}
    else:
        report = {"expired": terminate_expired(env), "stale": clean_stale(env)}
    if as_json:
        output.emit_json(report)
    elif run:
        click.echo(f"run {run}: {len(report['terminated'])} leftover instance(s) terminated;"
                   " run forgotten")
    else:
        for name in report["expired"]:
            click.echo(f"run {name}: lifetime over, terminated")
        click.echo(f"removed {len(report['stale'])} stale local instance(s)")


def terminate_expired(env: Env) -> list[str]:
    """Runs whose `lifetime` has passed are terminated (run `clean` from cron)."""
    from cloudinitd.engine.context import open_run
    from cloudinitd.engine.terminate import terminate_run

    done = []
    for row in env.store.runs():
        if row["expires"] and row["expires"] < time.time() and row["status"] != "terminated":
            terminate_run(open_run(env.home, env.store, row["name"]))
            done.append(row["name"])
    return done


def clean_stale(env: Env) -> list[str]:
    """Ask each local provider for instances whose run no longer exists."""
    from cloudinitd.errors import ProviderError
    from cloudinitd.plan.model import CloudSpec
    from cloudinitd.providers import get_provider

    known = {r["name"] for r in env.store.runs()}
    removed: list[str] = []
    for kind in ("local", "qemu"):
        try:
            removed.extend(get_provider(CloudSpec(kind, kind), env.home).cleanup_stale(known))
        except ProviderError as exc:  # e.g. qemu not installed: nothing of it to clean
            output.info(f"{kind}: {exc}")
    return removed


@click.command()
@click.option("--check", is_flag=True, help="Verify each cloud with one cheap call.")
@json_option
@pass_env
def clouds(env: Env, check: bool, as_json: bool) -> None:
    """The cloud catalog ($CLOUDINITD_HOME/clouds.yml)."""
    from cloudinitd.catalog import load_catalog
    from cloudinitd.providers import get_provider

    catalog = load_catalog(env.home)
    rows = []
    failed = False
    for name, spec in sorted(catalog.items()):
        row = {"name": name, "provider": spec.provider,
               "endpoint": spec.options.get("endpoint"), "region": spec.options.get("region")}
        if check:
            try:
                row["check"] = get_provider(spec, env.home).check()
                row["ok"] = True
            except Exception as exc:
                row["check"], row["ok"], failed = str(exc), False, True
        rows.append(row)
    if as_json:
        output.emit_json(rows)
    else:
        if not rows:
            click.echo(f"no clouds in {env.home / 'clouds.yml'} (the built-in `local` and"
                       " `qemu` clouds need no entry)")
        for row in rows:
            where = row["endpoint"] or row["region"] or ""
            status = ("  ok: " if row.get("ok") else "  FAILED: ") + row["check"] \
                if check else ""
            click.echo(f"{row['name']:<16} {row['provider']:<8} {where}{status}")
    if failed:
        raise SystemExit(1)


COMMANDS = [list_runs, history, logs, clean, clouds]
