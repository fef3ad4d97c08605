"""Commands that act on a recorded run: status, repair, scale, terminate, reload."""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from pathlib import Path
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

if TYPE_CHECKING:  # the engine (paramiko, jinja2, ...) is imported when a command runs
    from cloudinitd.engine.context import RunContext


def _open(env: Env, run: str, quiet: bool = True, plan: Path | None = None,
          overrides: dict[str, str] | None = None) -> tuple[RunContext, output.Progress]:
    progress = output.progress_for_terminal(quiet)
    from cloudinitd.engine.context import open_run

    ctx = open_run(env.home, env.store, run, plan_path=plan, overrides=overrides,
                   progress=progress)
    return ctx, progress


INTERRUPTED_EXIT = 130  # 128 + SIGINT, as shells report a Ctrl-C


def exit_interrupted(ctx: RunContext, exc: Any, as_json: bool = False) -> None:
    """After Ctrl-C: say what is live (from the store, once launches under way were
    recorded) and both ways on, then exit 130 at once (SSH steps still running are
    dropped; `repair` re-runs them)."""
    live = ctx.store.instances(ctx.run)
    per_service = Counter(row["service"] for row in live)
    unsettled = getattr(exc, "unsettled", [])
    if as_json:
        output.emit_json({"run": ctx.run, "ok": False, "interrupted": True,
                          "live": [{"service": r["service"], "index": r["idx"],
                                    "cloud": r["cloud"], "instance_id": r["instance_id"],
                                    "state": r["state"]} for r in live],
                          "unanswered_launches": len(unsettled)})
    shown = ", ".join(f"{name}: {n}" for name, n in sorted(per_service.items())) or "none"
    output.error(f"interrupted: run {ctx.run} stopped launching; {len(live)} instance(s)"
                 f" live ({shown})")
    if unsettled:
        output.info(f"  {len(unsettled)} launch(es) got no answer yet; repair and terminate"
                    " find their instances by token and tag")
    output.info(f"  resume:  cloudinitd repair {ctx.run}")
    output.info(f"  remove:  cloudinitd terminate {ctx.run}")
    sys.stdout.flush()
    sys.stderr.flush()
    ctx.store.close()
    os._exit(INTERRUPTED_EXIT)


def status_data(env: Env, run: str) -> dict[str, Any]:
    row = env.store.run(run)
    services = env.store.services(run)
    instances = env.store.instances(run)
    attrs = env.store.attributes(run)
    out: dict[str, Any] = {
        "run": run, "plan": row["plan_name"], "plan_path": row["plan_path"],
        "status": row["status"], "created": row["created"], "expires": row["expires"],
        "services": {},
    }
    from cloudinitd.engine.access import dependency_order

    # Dependency order (the plan's boot levels), as the run was configured.
    names = set(services) | {inst["service"] for inst in instances}
    for name in dependency_order(env.store, env.home, run, names):
        svc = services.get(name)
        if svc is None:
            continue
        out["services"][name] = {"status": svc["status"], "step": svc["step"],
                                 "error": svc["error"], "log": svc["log_path"], "instances": []}
    # Where a service's instance count comes from: the plan, or a `scale` of this
    # run (dropped again by `reload`).
    for name, entry in out["services"].items():
        if name in row["counts"]:
            entry.update(count=int(row["counts"][name]), count_source="scale")
        else:
            entry["count_source"] = "plan"
    for inst in instances:
        entry = out["services"].setdefault(inst["service"], {"status": "unknown",
                                                             "instances": []})
        entry["instances"].append({
            "index": inst["idx"], "cloud": inst["cloud"], "instance_id": inst["instance_id"],
            "state": inst["state"], "address": inst["address"], "hostname": inst["hostname"],
            "attributes": attrs.get((inst["service"], inst["idx"]), {}), **inst["extra"],
        })
    from cloudinitd.engine.access import run_plan_outputs

    out["outputs"], out["output_errors"] = run_plan_outputs(env.store, env.home, run)
    return out


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
    ok = env.store.run(run)["status"] in ("ready",)
    if check:
        from cloudinitd.engine.maintain import check as check_run

        ctx, _ = _open(env, run)
        health = check_run(ctx)
        data = status_data(env, run)
        for item in health.instances:
            for inst in data["services"].get(item["service"], {}).get("instances", []):
                if inst["index"] == item["index"]:
                    inst.update(healthy=item["healthy"], detail=item["detail"])
            if item["state"] == "missing":
                data["services"].setdefault(item["service"], {"instances": []})
                data["services"][item["service"]]["instances"].append(
                    {"index": item["index"], "state": "missing", "address": None,
                     "cloud": "-", "instance_id": "-", "healthy": False,
                     "detail": item["detail"]})
        # One unhealthy or missing instance makes its service and the run unhealthy.
        for name in {service for service, _ in health.unhealthy}:
            entry = data["services"].setdefault(name, {"instances": []})
            entry["status"] = "unhealthy"
        if not health.ok:
            data["status"] = "unhealthy"
        data["healthy"] = health.ok
        ok = ok and health.ok
    else:
        data = status_data(env, run)
    if as_json:
        output.emit_json(data)
    else:
        print_status(data)
    if not ok:
        raise SystemExit(1)


def _report(env: Env, run: str, result, as_json: bool, extra: dict | None = None) -> None:
    if as_json:
        output.emit_json({"run": run, "ok": result.ok, **(extra or {}),
                          "services": {n: s.as_dict() for n, s in result.services.items()}})
    if not result.ok:
        output.print_failures(result)
        raise SystemExit(1)
    if not as_json:
        click.echo(f"run {run}: ready")


def _converging(ctx: RunContext, progress: output.Progress, as_json: bool, work: Any) -> Any:
    """Run `work()` under the progress display; Ctrl-C reports what is live, exit 130."""
    from cloudinitd.engine.converge import Interrupted

    try:
        with progress:
            return work()
    except Interrupted as exc:
        exit_interrupted(ctx, exc, as_json)


@click.command()
@click.argument("run", type=RUN)
@click.option("--relaunch", is_flag=True,
              help="Also repair a terminated run: launch and configure all of it again.")
@click.option("-q", "--quiet", is_flag=True, help="No progress display.")
@json_option
@pass_env
def repair(env: Env, run: str, relaunch: bool, quiet: bool, as_json: bool) -> None:
    """Re-launch / re-boot what is unhealthy, then re-configure dependents whose inputs changed."""
    from cloudinitd.engine.maintain import repair as repair_run

    ctx, progress = _open(env, run, quiet)
    result = _converging(ctx, progress, as_json, lambda: repair_run(ctx, relaunch=relaunch))
    _report(env, run, result, as_json)


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
    from cloudinitd.engine.maintain import scale as scale_run
    from cloudinitd.plan.limits import Limits

    limits = Limits.from_env(max_instances)
    ctx, progress = _open(env, run, quiet)
    removed, result = _converging(ctx, progress, as_json,
                                  lambda: scale_run(ctx, service, count, limits))
    for problem in removed.errors:
        output.error(problem)
    _report(env, run, result, as_json, {"service": service, "count": count,
                                        "removed": removed.terminated})


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
    from cloudinitd.engine.terminate import terminate_run
    from cloudinitd.errors import CloudinitdError, PlanError

    try:
        try:
            ctx, progress = _open(env, run, quiet)
        except PlanError as exc:
            output.error(f"{exc}; terminating instances without running terminate scripts")
            progress = output.progress_for_terminal(quiet)
            from cloudinitd.engine.context import open_run_without_plan

            ctx = open_run_without_plan(env.home, env.store, run, progress=progress)
        with progress:
            result = terminate_run(ctx)
    except CloudinitdError as exc:  # e.g. no such run: say so, go on with the others
        if not several:
            raise
        output.error(str(exc))
        return {"run": run, "ok": False, "terminated": [], "errors": [str(exc)],
                "code": exc.exit_code}
    for problem in result.errors:
        output.error(problem)
    if not as_json:
        click.echo(f"run {run}: terminated {len(result.terminated)} instance(s)")
    return {"run": run, "ok": result.ok, "terminated": result.terminated,
            "errors": result.errors, "code": 0 if result.ok else 1}


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
    from cloudinitd.cli.import_commands import plan_path
    from cloudinitd.engine.maintain import repair as repair_run
    from cloudinitd.paths import find_plan

    path = find_plan(plan_path(env, plan)).resolve()  # TOP.conf: the original's reload
    recorded = env.store.run(run)
    overrides = {**recorded["vars"], **parse_vars(vars_)}
    ctx, progress = _open(env, run, quiet, plan=path, overrides=overrides)
    # The plan is the source of truth after a reload: `scale` overrides are dropped
    # (and said so); scale again after the reload to keep another count.
    dropped = recorded["counts"]
    for service, count in sorted(dropped.items()):
        svc = ctx.plan.services.get(service)
        now = f"the plan's count {svc.count} applies" if svc else "service no longer in the plan"
        output.info(f"reload: dropped the scale override {service}={count} ({now})")
    env.store.update_run(run, plan_path=str(path), vars=overrides, counts={})
    env.store.event(run, "reload", f"plan {path}"
                    + (f"; scale overrides dropped: {dropped}" if dropped else ""))
    result = _converging(ctx, progress, as_json, lambda: repair_run(ctx))
    _report(env, run, result, as_json, {"dropped_scale_overrides": dropped})


COMMANDS = [status, repair, scale, terminate, reload]
