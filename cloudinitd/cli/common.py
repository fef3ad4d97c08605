"""Pieces every command shares: the --json flag, --var parsing, run names, the store."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click
from click.shell_completion import CompletionItem

from cloudinitd.errors import UsageError
from cloudinitd.names import check_run_name
from cloudinitd.paths import cloudinitd_home

if TYPE_CHECKING:  # the store pulls the cloud schema: imported on first use
    from cloudinitd.store import Store

json_option = click.option("--json", "as_json", is_flag=True,
                           help="Machine-readable output on stdout.")
_var = click.option("--var", "vars_", multiple=True, metavar="K=V",
                    help="Override a plan var (repeatable; wins over --var-file).")
_VAR_FILES = "cloudinitd.var_files"


def _remember_var_files(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> None:
    ctx.meta[_VAR_FILES] = value


_var_file = click.option("--var-file", multiple=True, metavar="FILE", expose_value=False,
                         type=click.Path(), callback=_remember_var_files,
                         help="Plan vars from a YAML mapping (repeatable; later files win).")


def var_option(fn):  # noqa: ANN001, ANN201 (a click decorator)
    """--var K=V and --var-file FILE; `parse_vars` merges them."""
    return _var(_var_file(fn))


def read_var_file(path: str) -> dict[str, str]:
    """A YAML mapping of var names to scalars, as --var texts (types kept: `'4'` stays text)."""
    import json

    from cloudinitd.errors import PlanError
    from cloudinitd.plan.limits import MAX_PLAN_BYTES, read_text
    from cloudinitd.plan.loader import parse_override
    from cloudinitd.plan.yamlpos import PosDict, load_yaml

    # Read as a plan is (it may come with one): checked on the opened file (a FIFO,
    # /dev/zero), bounded, and parsed with the plan's nesting and alias limits.
    try:
        data = load_yaml(read_text(Path(path), MAX_PLAN_BYTES, path), path)
    except OSError as e:  # a FileRefused says why in file_problem's words
        raise UsageError(f"--var-file {path}: cannot read: {e.strerror}") from None
    if data is None:
        return {}
    if not isinstance(data, PosDict):
        raise PlanError("a var file is a mapping of names to values (name: value)", path, 1)
    out: dict[str, str] = {}
    for key, value in data.items():
        if not isinstance(value, str | int | float | bool) or not isinstance(key, str):
            raise PlanError(f"{str(key)[:60]}: a var is a string, number or boolean",
                            path, data.key_lines.get(key))
        if isinstance(value, str):
            out[key] = value if parse_override(value) == value else json.dumps(value)
        else:
            out[key] = json.dumps(value)
    return out


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

    def shell_complete(self, ctx, param, incomplete):  # noqa: ANN001, ANN201
        return [CompletionItem(name) for name in run_names() if name.startswith(incomplete)]


def _existing_store() -> Store | None:
    """The store, if there is one: completing a word must never create a home folder."""
    from cloudinitd.store import Store

    home = cloudinitd_home()
    return Store(home) if (home / "state.db").exists() else None


def run_names() -> list[str]:
    """Recorded runs, for shell completion (nothing, rather than an error, if unreadable)."""
    try:
        store = _existing_store()
        return [row.name for row in store.runs()] if store else []
    except Exception:  # completion must never print a traceback into the shell
        return []


def complete_service(ctx: click.Context, param: click.Parameter,
                     incomplete: str) -> list[CompletionItem]:
    """SERVICE names of the RUN already on the command line."""
    return [c for c in complete_instance(ctx, param, incomplete) if "/" not in c.value]


def complete_instance(ctx: click.Context, param: click.Parameter,
                      incomplete: str) -> list[CompletionItem]:
    """SERVICE and SERVICE/INDEX words of the RUN already on the command line."""
    run = ctx.params.get("run")
    try:
        store = _existing_store() if run else None
        rows = store.instances(run) if store else []
        names = set(store.services(run)) if store else set()
    except Exception:
        return []
    words = names | {r.service for r in rows} | {f"{r.service}/{r.idx}" for r in rows}
    return [CompletionItem(w) for w in sorted(words) if w.startswith(incomplete)]


RUN = RunNameType()


def parse_vars(items: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    ctx = click.get_current_context(silent=True)
    for path in (ctx.meta.get(_VAR_FILES, ()) if ctx else ()):
        out.update(read_var_file(path))
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
