"""Commands that act on a recorded run: status, repair, scale, terminate, reload."""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import click

from cloudinitd.cli import output
from cloudinitd.cli.common import (
    RUN,
    Env,
    complete_service,
    json_option,
    parse_vars,
    pass_env,
    var_option,
)
from cloudinitd.textsafe import for_terminal

if TYPE_CHECKING:  # the API (and the engine below it) is imported when a command runs
    from cloudinitd.api import Interrupted, RunOutcome

INTERRUPTED_EXIT = 130  # 128 + SIGINT, as shells report a Ctrl-C


def exit_interrupted(exc: Interrupted, as_json: bool = False) -> None:
    """After Ctrl-C: say what is live (from the store, once launches under way were
    recorded) and both ways on, then exit 130 at once (SSH steps still running are
    dropped; `repair` re-runs them)."""
    per_service = Counter(inst.service for inst in exc.live)
    if as_json:
        output.emit_json({"run": exc.run, "ok": False, "interrupted": True,
                          "live": [{"service": i.service, "index": i.index, "cloud": i.cloud,
                                    "instance_id": i.instance_id, "state": i.state}
                                   for i in exc.live],
                          "unanswered_launches": exc.unsettled})
    shown = ", ".join(f"{name}: {n}" for name, n in sorted(per_service.items())) or "none"
    output.error(f"interrupted: run {exc.run} stopped launching; {len(exc.live)} instance(s)"
                 f" live ({shown})")
    if exc.unsettled:
        output.info(f"  {exc.unsettled} launch(es) got no answer yet; repair and terminate"
                    " find their instances by token and tag")
    output.info(f"  resume:  cloudinitd repair {exc.run}")
    output.info(f"  remove:  cloudinitd terminate {exc.run}")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(INTERRUPTED_EXIT)


def converging(progress: output.Progress, as_json: bool, work: Any) -> Any:
    """Run `work()` under the progress display; Ctrl-C reports what is live, exit 130."""
    from cloudinitd.api import Interrupted

    try:
        with progress:
            return work()
    except Interrupted as exc:
        exit_interrupted(exc, as_json)


def status_data(env: Env, run: str) -> dict[str, Any]:
    """`status --json` of RUN (from the store; `api.status` is the typed form)."""
    from cloudinitd import api

    return api.status(run, home=env.home).as_dict()


def print_status(data: dict[str, Any]) -> None:
    # Exports were written by scripts inside instances; a pipe gets them as they are.
    shown = for_terminal if sys.stdout.isatty() else str
    click.echo(f"run {data['run']} (plan {data['plan']}): {data['status']}")
    if data.get("expires"):
        left = data["expires"] - time.time()
        click.echo(f"  lifetime: {'expired' if left <= 0 else f'{left / 3600:.1f}h left'}")
    for name, svc in data["services"].items():
        count = (f" [count {svc['count']} set by scale]"
                 if svc.get("count_source") == "scale" else "")
        click.echo(f"  {name}: {svc['status']}{count}" + (f" ({svc['error']})"
                                                          if svc.get("error") else ""))
        for inst in svc["instances"]:
            extra = f" accel={inst['accel']}" if inst.get("accel") else ""
            health = ""
            if "healthy" in inst:
                health = " healthy" if inst["healthy"] else f" UNHEALTHY: {inst['detail']}"
            click.echo(f"    [{inst['index']}] {inst['state']:<10} {inst['address'] or '-':<16}"
                       f" {inst['cloud']}:{inst['instance_id']}{extra}{health}")
            exports = " ".join(f"{k}={v}" for k, v in (inst.get("attributes") or {}).items())
            if exports:
                click.echo(f"        {shown(exports)}")
    print_addresses({name: [i for i in svc["instances"] if i.get("state") != "missing"]
                     for name, svc in data["services"].items()})
    print_outputs(data.get("outputs", {}), data.get("output_errors", {}))


def print_outputs(values: dict[str, str], problems: dict[str, str], err: bool = False) -> None:
    """The closing `outputs:` block (the plan's `outputs:`, rendered), one NAME VALUE a line."""
    if not values and not problems:
        return
    shown = for_terminal if (sys.stderr if err else sys.stdout).isatty() else str
    click.echo("outputs:", err=err)
    width = max(len(k) for k in [*values, *problems])
    for key, value in values.items():
        click.echo(f"  {key:<{width}} {shown(value)}", err=err)
    for key, problem in problems.items():
        click.echo(f"  {key:<{width}} (cannot render: {problem})", err=err)


def print_addresses(services: dict[str, list[dict[str, Any]]], err: bool = False) -> None:
    """The closing `addresses:` block of boot and status: SERVICE/INDEX ADDRESS, one a line."""
    rows = [(f"{name}/{inst['index']}", inst["address"])
            for name, items in services.items() for inst in items if inst.get("address")]
    if not rows:
        return
    click.echo("addresses:", err=err)
    width = max(len(label) for label, _ in rows)
    for label, address in rows:
        click.echo(f"  {label:<{width}} {address}", err=err)


@click.command()
@click.argument("run", type=RUN)
@click.option("--check", is_flag=True, help="Also describe instances and run ready scripts.")
@json_option
@pass_env
def status(env: Env, run: str, check: bool, as_json: bool) -> None:
    """Every service and instance of RUN, from the store."""
    from cloudinitd import api

    data = api.status(run, home=env.home, check=check)
    if as_json:
        output.emit_json(data.as_dict())
    else:
        print_status(data.as_dict())
    if not data.ok:
        raise SystemExit(1)


def _report(result: RunOutcome, as_json: bool, extra: dict | None = None) -> None:
    # The exit status is the services' (as it always was): instances `scale` could not
    # remove are printed as errors before this, without failing the command.
    ok = all(s.ok for s in result.services.values())
    if as_json:
        output.emit_json({"run": result.run, "ok": ok, **(extra or {}),
                          "services": {n: s.as_dict() for n, s in result.services.items()}})
    if not ok:
        output.print_failures(result)
        raise SystemExit(1)
    if not as_json:
        click.echo(f"run {result.run}: ready")


@click.command()
@click.argument("run", type=RUN)
@click.option("--relaunch", is_flag=True,
              help="Also repair a terminated run: launch and configure all of it again.")
@click.option("-q", "--quiet", is_flag=True, help="No progress display.")
@json_option
@pass_env
def repair(env: Env, run: str, relaunch: bool, quiet: bool, as_json: bool) -> None:
    """Re-launch / re-boot what is unhealthy, then re-configure dependents whose inputs changed."""
    from cloudinitd import api

    progress = output.progress_for_terminal(quiet)
    _report(converging(progress, as_json, lambda: api.repair(
        run, home=env.home, relaunch=relaunch, progress=progress)), as_json)


@click.command()
@click.argument("run", type=RUN)
@click.argument("service", shell_complete=complete_service)
@click.argument("count", type=click.IntRange(min=0))
@click.option("--max-instances", type=click.IntRange(min=1),
              help="Raise the per-service and per-run instance limits (README: Limits).")
@click.option("-q", "--quiet", is_flag=True, help="No progress display.")
@json_option
@pass_env
def scale(env: Env, run: str, service: str, count: int, max_instances: int | None, quiet: bool,
          as_json: bool) -> None:
    """Change SERVICE's instance count in RUN (overflow policy applies)."""
    from cloudinitd import api

    progress = output.progress_for_terminal(quiet)
    result = converging(progress, as_json, lambda: api.scale(
        run, service, count, home=env.home, max_instances=max_instances, progress=progress))
    for problem in result.errors:
        output.error(problem)
    removed = [{"service": i.service, "index": i.index, "cloud": i.cloud,
                "instance_id": i.instance_id} for i in result.removed]
    _report(result, as_json, {"service": service, "count": count, "removed": removed})


@click.command()
@click.argument("runs", nargs=-1, required=True, metavar="RUN...", type=RUN)
@click.option("-q", "--quiet", is_flag=True, help="No progress display.")
@json_option
@pass_env
def terminate(env: Env, runs: tuple[str, ...], quiet: bool, as_json: bool) -> None:
    """Terminate scripts in reverse dependency order, then the instances; waits until gone.

    Several runs are terminated one after the other; a failing one does not stop the rest.
    """
    names = list(dict.fromkeys(runs))
    reports = [_terminate_one(env, run, quiet, as_json, len(names) > 1) for run in names]
    code = max(r.pop("code") for r in reports)
    if as_json:
        output.emit_json(reports[0] if len(reports) == 1 else
                         {"ok": all(r["ok"] for r in reports), "runs": reports})
    if code:
        raise SystemExit(code)


def _terminate_one(env: Env, run: str, quiet: bool, as_json: bool, several: bool) -> dict:
    from cloudinitd import api
    from cloudinitd.errors import CloudinitdError

    progress = output.progress_for_terminal(quiet)
    try:
        with progress:
            result = api.terminate(run, home=env.home, progress=progress, on_note=output.error)
    except CloudinitdError as exc:  # e.g. no such run: say so, go on with the others
        if not several:
            raise
        output.error(str(exc))
        return {"run": run, "ok": False, "terminated": [], "errors": [str(exc)],
                "code": exc.exit_code}
    for problem in result.errors:
        output.error(problem)
    if not as_json:
        click.echo(f"run {run}: terminated {len(result.removed)} instance(s)")
    terminated = [{"service": i.service, "index": i.index, "cloud": i.cloud,
                   "instance_id": i.instance_id} for i in result.removed]
    return {"run": run, "ok": result.ok, "terminated": terminated,
            "errors": list(result.errors), "code": 0 if result.ok else 1}


@click.command()
@click.argument("plan")
@click.option("--name", "run", type=RUN, required=True,
              help="The run to load the plan into.")
@var_option
@click.option("-q", "--quiet", is_flag=True, help="No progress display.")
@click.option("--dry-run", is_flag=True,
              help="Only say what the reload would do (as `cloudinitd diff`); change nothing.")
@json_option
@pass_env
def reload(env: Env, plan: str, run: str, vars_: tuple[str, ...], quiet: bool,
           dry_run: bool, as_json: bool) -> None:
    """Load an edited PLAN into an existing run, then repair it."""
    if dry_run:
        from cloudinitd.cli.change_commands import show_diff

        show_diff(env, plan, run, vars_, scripts=False, as_json=as_json)
        return
    from cloudinitd import api

    progress = output.progress_for_terminal(quiet)
    overrides = parse_vars(vars_)
    result = converging(progress, as_json, lambda: api.reload(
        plan, run, home=env.home, vars=overrides, progress=progress, on_note=output.info))
    _report(result, as_json, {"dropped_scale_overrides": dict(result.dropped_scale_overrides)})


COMMANDS = [status, repair, scale, terminate, reload]
