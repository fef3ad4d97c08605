"""Using a run after boot: ssh, exec, output; and `schema` for editors.

Thin: the API (`cloudinitd.api`: choose, instances, login_argv, exec, outputs)
decides which instances and how to log in; these commands parse and format.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from typing import Any

import click

from cloudinitd.cli import output
from cloudinitd.cli.common import (
    RUN,
    Env,
    complete_instance,
    complete_service,
    json_option,
    pass_env,
)
from cloudinitd.errors import UsageError
from cloudinitd.textsafe import for_terminal


class _DashDashCommand(click.Command):
    """Everything after `--` is the remote command, never SERVICE (ssh's own convention)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            cut = args.index("--")
            args, ctx.meta["remote_command"] = args[:cut], args[cut + 1:]
        return super().parse_args(ctx, args)


def _pick_interactively(env: Env, run: str, selector: str | None) -> Any:
    """On a terminal, several matching instances become a numbered question."""
    from cloudinitd import api
    from cloudinitd.errors import UsageError

    try:
        return api.choose(run, selector, home=env.home)
    except UsageError:
        service = (selector or "").partition("/")[0]
        found = api.instances(run, (service,) if service else (), home=env.home)
        if len(found) < 2 or not (sys.stdin.isatty() and sys.stderr.isatty()) \
                or "/" in (selector or ""):
            raise
    for n, inst in enumerate(found, 1):
        click.echo(f"  {n}) {inst.label}  {inst.address}", err=True)
    n = click.prompt("instance", type=click.IntRange(1, len(found)), err=True)
    return found[n - 1]


@click.command(cls=_DashDashCommand)
@click.argument("run", type=RUN)
@click.argument("instance", metavar="[SERVICE[/INDEX]]", required=False,
                shell_complete=complete_instance)
@click.option("--print", "print_only", is_flag=True, help="Print the ssh command, run nothing.")
@pass_env
@click.pass_context
def ssh(click_ctx: click.Context, env: Env, run: str, instance: str | None,
        print_only: bool) -> None:
    """Log in to an instance of RUN (or run `-- COMMAND` there) with the system ssh.

    Uses the run's key and its pinned host keys only. Without SERVICE the
    run's only instance is used; with several, name one as SERVICE/INDEX.
    """
    from cloudinitd import api

    chosen = _pick_interactively(env, run, instance)
    argv = api.login_argv(chosen, click_ctx.meta.get("remote_command") or None,
                          pin=not print_only)
    if print_only:
        click.echo(shlex.join(argv))
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvp(argv[0], argv)  # becomes ssh: its terminal, exit status and signals


@click.command(name="exec", cls=_DashDashCommand)
@click.argument("run", type=RUN)
@click.option("--service", "-s", "services", multiple=True, metavar="S",
              shell_complete=complete_service, help="Only this service (repeatable).")
@click.option("--sudo", is_flag=True, help="Run the command as root (sudo -n).")
@click.option("--timeout", type=click.FloatRange(min=1), default=None, metavar="SECONDS",
              help="Give up on an instance after this long.")
@json_option
@pass_env
@click.pass_context
def exec_(click_ctx: click.Context, env: Env, run: str, services: tuple[str, ...], sudo: bool,
          timeout: float | None, as_json: bool) -> None:
    """Run `-- COMMAND` on every instance of RUN (or of --service) in parallel.

    Output lines are prefixed by SERVICE/INDEX; exit status 1 if any instance
    failed or could not be reached, naming them.
    """
    from cloudinitd import api
    from cloudinitd.errors import UsageError

    words = click_ctx.meta.get("remote_command") or []
    if not words:
        raise UsageError("exec needs a command after `--`, e.g. cloudinitd exec RUN -- uptime")
    command = " ".join(words)  # as ssh does: the remote shell parses it

    def show(label: str, stream: str, line: str) -> None:
        # Guest text: escape sequences would act on the operator's terminal.
        click.echo(f"{label}: {for_terminal(line)}", err=stream == "stderr")

    result = api.exec(run, command, home=env.home, services=services, sudo=sudo,
                      timeout=timeout, on_line=None if as_json else show)
    if as_json:
        output.emit_json({"run": run, "ok": result.ok, "instances": [
            {"service": i.service, "index": i.index, "address": i.address, "exit": i.exit,
             "stdout": i.stdout, "stderr": i.stderr,
             "error": i.detail if i.exit is None else None} for i in result.instances]})
    failed = result.failed_instances
    for inst in failed:
        why = f"exit {inst.exit}" if inst.exit is not None else f"not run: {inst.detail}"
        output.error(f"{inst.label} ({inst.address}) failed: {why}")
    if not result.ok:
        output.error(f"{len(failed)} of {len(result.instances)} instance(s) failed: "
                     + ", ".join(r.label for r in failed))
        raise SystemExit(1)


@click.command(name="output")
@click.argument("run", type=RUN)
@click.argument("selector", metavar="[SERVICE[.ATTR]]", required=False,
                shell_complete=complete_service)
@click.option("--raw", is_flag=True,
              help="One value per line (addresses, or ATTR's values), for shell loops.")
@json_option
@pass_env
def output_(env: Env, run: str, selector: str | None, raw: bool, as_json: bool) -> None:
    """Addresses and exported values of RUN's live instances, and the plan's `outputs:`.

    SELECTOR is a service, SERVICE.ATTR, or the name of one of the plan's outputs.
    """
    from cloudinitd import api
    from cloudinitd.cli.run_commands import print_outputs

    values, problems = api.plan_outputs(run, home=env.home)
    if selector and (selector in values or selector in problems):
        if selector in problems:
            raise UsageError(f"output {selector}: {problems[selector]}")
        if as_json:
            output.emit_json(values[selector])
        else:
            shown = for_terminal if sys.stdout.isatty() and not raw else str
            click.echo(shown(values[selector]))
        return
    chosen = api.outputs(run, selector, home=env.home)
    if as_json:
        output.emit_json(chosen if selector else {"services": chosen, "outputs": values,
                                                  "output_errors": problems})
        return
    shown = for_terminal if sys.stdout.isatty() else str
    if isinstance(chosen, dict):  # the whole run
        rows = [(name, item) for name, items in chosen.items() for item in items]
    elif chosen and isinstance(chosen[0], dict):  # one service's instances
        rows = [(selector, item) for item in chosen]
    else:  # SERVICE.ATTR: already one value per instance
        for value in chosen:
            click.echo(shown(value if isinstance(value, str) else json.dumps(value)))
        return
    width = max((len(f"{name}/{item['index']}") for name, item in rows), default=0)
    for name, item in rows:
        if raw:
            click.echo(item["address"] or "")
            continue
        exports = " ".join(f"{k}={shown(json.dumps(v) if not isinstance(v, str) else v)}"
                           for k, v in item.items()
                           if k not in ("index", "address", "private_address", "hostname",
                                        "instance_id", "cloud"))
        click.echo(f"{name + '/' + str(item['index']):<{width}} {item['address'] or '-':<16}"
                   f" {item['hostname'] or '-':<20} {exports}".rstrip())
    if not selector and not raw:
        print_outputs(values, problems)


@click.command()
def schema() -> None:
    """The JSON Schema of a plan file (for editors, e.g. yaml-language-server)."""
    from cloudinitd.plan.schema import PLAN_SCHEMA

    doc = {"$schema": "https://json-schema.org/draft/2020-12/schema",
           "title": "cloudinitd plan", **PLAN_SCHEMA}
    click.echo(json.dumps(doc, indent=2, default=str))


COMMANDS = [ssh, exec_, output_, schema]
