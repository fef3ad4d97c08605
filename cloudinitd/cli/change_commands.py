"""`diff PLAN --name RUN`: what a reload of an edited plan would do, done by nothing.

`reload --dry-run` prints the same (cli/run_commands.py calls `show_diff`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from cloudinitd.cli import output
from cloudinitd.cli.common import RUN, Env, json_option, parse_vars, pass_env, var_option

if TYPE_CHECKING:
    from cloudinitd.engine.diff import RunDiff

_REASONS = {"script:boot": "boot script text", "script:ready": "ready script text",
            "script:terminate": "terminate script text", "args": "boot args",
            "rendered": "rendered boot script"}


def reason(name: str) -> str:
    """`env.PORT` -> `env PORT`, `vars.n` -> `var n`; a dependency's `db.token` as it is."""
    if name in _REASONS:
        return _REASONS[name]
    if name.startswith("env."):
        return f"env {name[4:]}"
    if name.startswith("vars."):
        return f"var {name[5:]}"
    return name


def compute_diff(env: Env, plan: str, run: str, vars_: tuple[str, ...],
                 scripts: bool = False) -> RunDiff:
    """Load PLAN with the run's recorded vars (and new ones) and compare; read only."""
    from cloudinitd.api import plan_file
    from cloudinitd.catalog import load_catalog
    from cloudinitd.engine.access import require_run
    from cloudinitd.engine.diff import plan_diff, read_run
    from cloudinitd.engine.inputs import input_key
    from cloudinitd.homeshare import recorded_share
    from cloudinitd.paths import find_plan
    from cloudinitd.plan.loader import load_plan
    from cloudinitd.sandbox import SESSION_SECONDS, render_session
    from cloudinitd.templates import placeholder_extra

    recorded = require_run(env.store, run)
    path = find_plan(plan_file(plan, env.home, output.info)).resolve()
    overrides = {**recorded.vars, **parse_vars(vars_)}
    run_dir = env.store.run_dir(run)
    with render_session(SESSION_SECONDS):
        loaded = load_plan(path, overrides=overrides, catalog=load_catalog(env.home))
        # `home` as the run's share last served it; never a new share (no sshd starts).
        home = recorded_share(run_dir) or placeholder_extra()["home"]
        if loaded.vars.get("home_host"):
            home["host"] = str(loaded.vars["home_host"])
        return plan_diff(read_run(env.store, run, input_key(run_dir)), loaded,
                         extra={"home": home}, scripts=scripts)


def print_diff(diff: RunDiff) -> None:
    click.echo(f"run {diff.run} against plan {diff.plan}: what reload would do"
               " (nothing launched)")
    for name in diff.vars_changed:
        click.echo(f"  var {name} changed")
    launches = terminates = reconfigures = 0
    for name, svc in diff.services.items():
        if svc.state == "unchanged" and svc.dropped_override is None:
            continue
        count = (f"{svc.count_before} -> {svc.count_after} instance(s)"
                 if svc.count_before != svc.count_after else f"{svc.count_after} instance(s)")
        click.echo(f"  {name}: {'new service, ' if svc.state == 'added' else ''}{count}")
        if svc.dropped_override is not None:
            click.echo(f"    scale override {svc.dropped_override} dropped (the plan's count"
                       f" {svc.count_after} applies)")
        for cloud, indexes in svc.added.items():
            launches += len(indexes)
            click.echo(f"    + launch {', '.join(f'{name}/{i}' for i in indexes)} on {cloud}")
        for cloud, indexes in svc.removed.items():
            terminates += len(indexes)
            click.echo(f"    - terminate {', '.join(f'{name}/{i}' for i in indexes)}"
                       f" on {cloud}")
        for item in svc.reconfigure:
            reconfigures += item.certain
            mark, verb = ("~", "re-configure") if item.certain else ("?", "may re-configure")
            click.echo(f"    {mark} {verb} {name}/{item.index}: "
                       + ", ".join(reason(w) for w in item.why))
            if item.script_diff:
                for line in item.script_diff.splitlines():
                    click.echo(f"      {line}")
    for name, n in diff.left_running.items():
        click.echo(f"  {name}: not in the plan any more; its {n} instance(s) stay"
                   f" (`cloudinitd terminate {diff.run}` removes the whole run)")
    if not diff.changes:
        click.echo("  no changes")
    click.echo(f"{launches} to launch, {terminates} to terminate,"
               f" {reconfigures} to re-configure")


def show_diff(env: Env, plan: str, run: str, vars_: tuple[str, ...], scripts: bool,
              as_json: bool) -> dict[str, Any]:
    """Compute and print (text or JSON); the JSON form is returned too."""
    diff = compute_diff(env, plan, run, vars_, scripts)
    data = diff.as_dict()
    if as_json:
        output.emit_json(data)
    else:
        print_diff(diff)
    return data


scripts_option = click.option("--scripts", is_flag=True,
                              help="Also show a unified diff of each re-configured instance's"
                                   " rendered boot script.")


@click.command()
@click.argument("plan")
@click.option("--name", "run", type=RUN, required=True, help="The run to compare with.")
@var_option
@scripts_option
@json_option
@pass_env
def diff(env: Env, plan: str, run: str, vars_: tuple[str, ...], scripts: bool,
         as_json: bool) -> None:
    """What `reload PLAN --name RUN` would do: instances added and removed per cloud,
    services re-configured and which input changed, scale overrides dropped.

    Nothing is launched, written or started.
    """
    show_diff(env, plan, run, vars_, scripts, as_json)


COMMANDS = [diff]
