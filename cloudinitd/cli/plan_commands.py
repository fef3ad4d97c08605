"""Commands that start from a plan file: validate, graph, boot."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import click

from cloudinitd.cli import output
from cloudinitd.cli.common import (
    RUN,
    Env,
    json_option,
    max_instances_option,
    parse_vars,
    pass_env,
    var_option,
)
from cloudinitd.errors import UsageError
from cloudinitd.plan.model import Plan


def load(env: Env, plan: str, vars_: tuple[str, ...],
         max_instances: int | None = None) -> tuple[Plan, dict[str, str]]:
    from cloudinitd import api

    overrides = parse_vars(vars_)
    return api.load(plan, home=env.home, vars=overrides, max_instances=max_instances,
                    on_note=output.info), overrides


@click.command()
@click.argument("plan")
@var_option
@max_instances_option
@json_option
@pass_env
def validate(env: Env, plan: str, vars_: tuple[str, ...], max_instances: int | None,
             as_json: bool) -> None:
    """Load and check PLAN; nothing is launched."""
    from cloudinitd.graph import boot_levels, build_graph

    loaded, _ = load(env, plan, vars_, max_instances)
    levels = boot_levels(build_graph(loaded))
    if as_json:
        output.emit_json({"plan": loaded.name, "path": str(loaded.path), "valid": True,
                          "services": sorted(loaded.services), "levels": levels})
    else:
        click.echo(f"{loaded.path}: plan {loaded.name!r} is valid: {len(loaded.services)}"
                   f" service(s) in {len(levels)} boot level(s)")


def _recorded_run(env: Env, name: str) -> str | None:
    """`graph RUN`: NAME is a recorded run when it is not a path to a plan."""
    from cloudinitd.cli.common import _existing_store

    if Path(name).exists():
        return None
    try:
        store = _existing_store()
        if store is not None and any(r.name == name for r in store.runs()):
            return name
    except Exception:  # an unreadable store: treat NAME as a plan, which reports its own error
        return None
    return None


def _graph_of_run(env: Env, run: str, fmt: str) -> str:
    """A recorded run's graph (its plan's, with each service's state and instances)."""
    from cloudinitd import api
    from cloudinitd.graph import boot_levels, build_graph
    from cloudinitd.plan.picture import run_dot

    plan = api.run_plan(run, home=env.home)
    g = build_graph(plan)
    levels = boot_levels(g)
    data = api.status(run, home=env.home).as_dict()
    if fmt == "json":
        return json.dumps({"run": run, "plan": plan.name, "status": data["status"],
                           "levels": levels, "edges": [list(e) for e in sorted(g.edges)],
                           "services": {n: {"status": s.get("status"), "instances": [
                               {"index": i["index"], "state": i["state"],
                                "address": i["address"]} for i in s.get("instances", [])]}
                               for n, s in data["services"].items()}}, indent=2) + "\n"
    if fmt == "text":
        rows = [f"run {run} (plan {plan.name}): {data['status']}"]
        for level, names in enumerate(levels):
            rows.append(f"level {level}:")
            for name in names:
                svc = data["services"].get(name, {})
                where = ", ".join(f"/{i['index']} {i['state']} {i['address'] or '-'}"
                                  for i in svc.get("instances", []))
                rows.append(f"  {name}: {svc.get('status', 'not recorded')}"
                            + (f" ({where})" if where else ""))
        return "\n".join(rows) + "\n"
    return run_dot(plan, g, levels, data)


@click.command()
@click.argument("plan", metavar="PLAN|RUN")
@click.option("--format", "fmt", type=click.Choice(["text", "dot", "json", "svg", "png"]),
              default="text", show_default=True)
@click.option("-o", "--output", "out", type=click.Path(dir_okay=False), help="Write to FILE.")
@var_option
@max_instances_option
@json_option
@pass_env
def graph(env: Env, plan: str, fmt: str, out: str | None, vars_: tuple[str, ...],
          max_instances: int | None, as_json: bool) -> None:
    """The dependency graph of PLAN and its boot levels, or of a recorded RUN with each
    service's state and its instances' addresses.

    The picture (`--format dot|svg|png`) shows counts, clouds, levels and why each edge
    exists; svg and png need graphviz's `dot`. A name that is a recorded run (and not a
    path) means the run: give a path (./plan.yml) for a plan of the same name.
    """
    from cloudinitd.graph import boot_levels, build_graph
    from cloudinitd.plan.picture import plan_dot

    fmt = "json" if as_json else fmt
    run = _recorded_run(env, plan)
    if run is not None:
        text = _graph_of_run(env, run, fmt)
    else:
        loaded, _ = load(env, plan, vars_, max_instances)
        g = build_graph(loaded)
        levels = boot_levels(g)
        if fmt == "json":
            text = json.dumps({"plan": loaded.name, "levels": levels,
                               "edges": [list(e) for e in sorted(g.edges)]}, indent=2) + "\n"
        elif fmt == "text":
            rows = []
            for level, names in enumerate(levels):
                parts = []
                for name in names:
                    deps = sorted(g.predecessors(name))
                    parts.append(f"{name} (after {', '.join(deps)})" if deps else name)
                rows.append(f"level {level}: {', '.join(parts)}")
            text = "\n".join(rows) + "\n"
        else:
            text = plan_dot(loaded, g, levels)
    if fmt in ("svg", "png"):
        if not out:
            raise UsageError(f"--format {fmt} needs -o FILE")
        if not shutil.which("dot"):
            raise UsageError(f"--format {fmt} needs graphviz's `dot` (apt-get install graphviz,"
                             " or scripts/install-system-deps.sh); --format dot works without it")
        # PNG at 144 dpi: the 13 pt labels stay sharp on a laptop screen.
        extra = ["-Gdpi=144"] if fmt == "png" else []
        subprocess.run(["dot", f"-T{fmt}", *extra, "-o", out], input=text.encode(), check=True)
        return
    if out:
        Path(out).write_text(text)
    else:
        click.echo(text, nl=False)


@click.command()
@click.argument("plan")
@click.option("--name", "run_name", type=RUN, help="Run name (default: PLAN-N).")
@var_option
@max_instances_option
@click.option("--dry-run", is_flag=True, help="Render every script and print the schedule;"
              " launch nothing.")
@click.option("--show-values", is_flag=True,
              help="With --dry-run: render with realistic sample values (a port 8080, a URL,"
                   " a secret with a quote in it) instead of <svc.attr> placeholders.")
@click.option("-q", "--quiet", is_flag=True, help="No progress display.")
@json_option
@pass_env
def boot(env: Env, plan: str, run_name: str | None, vars_: tuple[str, ...],
         max_instances: int | None, dry_run: bool, show_values: bool, quiet: bool,
         as_json: bool) -> None:
    """Launch and configure PLAN; prints the run name."""
    from contextlib import ExitStack

    from cloudinitd import api
    from cloudinitd.cli.run_commands import exit_interrupted, print_addresses, print_outputs

    if show_values and not dry_run:
        raise UsageError("--show-values goes with --dry-run (it renders; it launches nothing)")
    loaded, overrides = load(env, plan, vars_, max_instances)
    if dry_run:
        report = api.dry_run(loaded, run_name, show_values=show_values)
        if as_json:
            output.emit_json(report)
        else:
            print_dry_run(report)
        return
    progress = output.progress_for_terminal(quiet)

    def started(run: str) -> None:  # recorded, nothing launched yet: the display starts
        output.info(f"run {run}: booting plan {loaded.name} ({len(loaded.services)} services)")
        display.enter_context(progress)

    try:
        with ExitStack() as display:
            result = api.boot(loaded, home=env.home, name=run_name, vars=overrides,
                              progress=progress, on_start=started)
    except api.Interrupted as exc:
        exit_interrupted(exc, as_json)
    where = {name: [{"index": i.index, "address": i.address} for i in items]
             for name, items in result.addresses().items()}
    values, problems = dict(result.outputs), dict(result.output_errors)
    if as_json:
        output.emit_json({"run": result.run, "ok": result.ok,
                          "seconds": round(result.seconds, 2),
                          "services": {n: s.as_dict() for n, s in result.services.items()},
                          "addresses": {n: [i["address"] for i in items]
                                        for n, items in where.items()},
                          "outputs": values, "output_errors": problems})
    else:
        click.echo(result.run)
        print_addresses(where, err=True)  # stdout stays the run name alone, for $(...)
        print_outputs(values, problems, err=True)
    if not result.ok:
        output.print_failures(result)
        output.info(f"run {result.run} failed; fix and `cloudinitd repair {result.run}`, or"
                    f" `cloudinitd terminate {result.run}`")
        raise SystemExit(1)
    output.info(f"run {result.run} ready in {result.seconds:.1f}s")


def print_dry_run(report: dict) -> None:
    click.echo(f"plan {report['plan']}: dry run, nothing launched")
    for step in report["schedule"]:
        if step["step"] == "launch":
            click.echo(f"  t=0 launch {step['count']} x {step['service']}")
    for step in report["schedule"]:
        if step["step"] == "configure":
            after = f" once {', '.join(step['after'])} ready" if step["after"] else ""
            click.echo(f"  configure {step['service']} (level {step['level']}){after}")
    if "sample_values" in report:
        click.echo("sample values (made up; a real run has its own):")
        for key, value in report["sample_values"].items():
            click.echo(f"  {key} = {value}")
    for inst in report["instances"]:
        for script_step, text in inst["scripts"].items():
            click.echo(f"--- {inst['service']}-{inst['index']} {script_step}"
                       f" ({inst['address']}) ---")
            click.echo(text, nl=not text.endswith("\n"))
    for warning in report.get("warnings", []):
        click.echo(f"warning: {warning}")
    click.echo("notes:")
    for note in report.get("notes", []):
        click.echo(f"  - {note}")


COMMANDS = [validate, graph, boot]
