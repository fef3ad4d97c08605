"""Pieces every command shares: the --json flag, --var parsing, run names, the store."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from cloudinitd.errors import UsageError
from cloudinitd.names import check_run_name
from cloudinitd.paths import cloudinitd_home

if TYPE_CHECKING:  # the store pulls the cloud schema: imported on first use
    from cloudinitd.store import Store

json_option = click.option("--json", "as_json", is_flag=True,
                           help="Machine-readable output on stdout.")
var_option = click.option("--var", "vars_", multiple=True, metavar="K=V",
                          help="Override a plan var (repeatable).")


max_instances_option = click.option(
    "--max-instances", type=click.IntRange(min=1), default=None, metavar="N",
    help="Allow up to N instances per service and per run (default 1000 / 2000;"
         " also $CLOUDINITD_MAX_INSTANCES).")


class RunNameType(click.ParamType):
    """A RUN argument or --name: checked by the one run-name rule while parsing.

    The error is raised as our UsageError (not click's), so it prints as one
    `cloudinitd: error:` line with exit 2, before the command does anything.
    """

    name = "RUN"

    def convert(self, value, param, ctx):  # noqa: ANN001, ANN201 (click's signature)
        return check_run_name(value)


RUN = RunNameType()


def parse_vars(items: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--var takes KEY=VALUE, got {item[:80]!r}")
        out[key.strip()] = value
    return out


class Env:
    """The home folder and its store, opened on first use."""

    def __init__(self) -> None:
        self._store: Store | None = None

    @property
    def home(self) -> Path:
        return cloudinitd_home()

    @property
    def store(self) -> Store:
        if self._store is None:
            from cloudinitd.store import Store

            self._store = Store(self.home)
        return self._store


pass_env = click.make_pass_decorator(Env, ensure=True)
