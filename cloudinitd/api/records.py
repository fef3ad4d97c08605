"""Reading and tidying the records: runs, history, logs, clean, clouds; and exec, outputs.

Plain arguments in, frozen results out (results.py); errors are cloudinitd.errors.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cloudinitd.api.home import home_path, opened_store
from cloudinitd.api.lifecycle import Home, Note, Progress, _silent, quiet
from cloudinitd.api.results import (
    CleanResult,
    CloudInfo,
    History,
    LogFile,
    RunOutcome,
    RunSummary,
)

if TYPE_CHECKING:
    from cloudinitd.store import Store


def runs(*, home: Home = None) -> tuple[RunSummary, ...]:
    """Every recorded run, oldest first, with its live instance count."""
    with opened_store(home) as store:
        return tuple(RunSummary(row.name, row.plan_name, row.plan_path, row.status, row.created,
                                row.updated, row.expires, len(store.instances(row.name)))
                     for row in store.runs())


def history(run: str, *, home: Home = None) -> History:
    """Every instance the run ever launched (terminated ones too) and its events."""
    with opened_store(home) as store:
        store.run(run)
        return History(run, tuple(store.instances(run, live_only=False)),
                       tuple(store.events(run)))


def logs(run: str, service: str | None = None, *, home: Home = None) -> tuple[LogFile, ...]:
    """The boot / ready / terminate logs of the run (or of one service), by file name."""
    from cloudinitd.engine.access import dependency_order
    from cloudinitd.errors import UsageError

    with opened_store(home) as store:
        store.run(run)
        if service:
            known = set(store.services(run)) | {
                i.service for i in store.instances(run, live_only=False)}
            if service not in known:
                names = dependency_order(store, home_path(home), run, known)
                raise UsageError(f"run {run!r} has no service {service!r}; services: "
                                 + (", ".join(names) or "none"))
        folder = store.run_dir(run) / "logs"
    files = sorted(folder.glob(f"{service}-*.log" if service else "*.log"))
    if service:
        files = [f for f in files if f.name.rsplit("-", 1)[0] == service]
    return tuple(LogFile(str(f), f.read_text(errors="replace")) for f in files)


def clean(run: str | None = None, *, home: Home = None, progress: Progress = quiet,
          on_note: Note = _silent) -> CleanResult:
    """With `run`: terminate whatever of it still lives (found by tag too) and forget it
    (kept when something could not be terminated: see `errors`). Without: terminate runs
    whose lifetime is over and remove host-local instances whose run is gone."""
    with opened_store(home) as store:
        if run:
            return _forget(store, home, run, progress)
        return CleanResult(expired=tuple(_terminate_expired(store, home, progress)),
                           stale=tuple(_clean_stale(store, home, on_note)))


def _forget(store: Store, home: Home, run: str, progress: Progress) -> CleanResult:
    from cloudinitd.engine.context import open_run_without_plan
    from cloudinitd.engine.terminate import destroy_instances

    ctx = open_run_without_plan(home_path(home), store, run, progress=progress)
    result = destroy_instances(ctx, store.instances(run), sweep=True)
    removed = result.removed
    if result.errors:
        return CleanResult(run, removed, errors=tuple(result.errors))
    store.delete_run(run)
    shutil.rmtree(store.run_dir(run), ignore_errors=True)
    return CleanResult(run, removed, forgotten=True)


def _terminate_expired(store: Store, home: Home, progress: Progress) -> list[str]:
    """Runs whose `lifetime` has passed are terminated (run `clean` from cron)."""
    from cloudinitd.engine.context import open_run
    from cloudinitd.engine.terminate import terminate_run

    done = []
    for row in store.runs():
        if row.expires and row.expires < time.time() and row.status != "terminated":
            terminate_run(open_run(home_path(home), store, row.name,
                                   progress=progress))
            done.append(row.name)
    return done


def _clean_stale(store: Store, home: Home, on_note: Note) -> list[str]:
    """Ask each host-local provider for instances whose run no longer exists."""
    from cloudinitd.errors import ProviderError
    from cloudinitd.plan.model import CloudSpec
    from cloudinitd.providers import get_provider, host_local_kinds

    known = {r.name for r in store.runs()}
    removed: list[str] = []
    for kind in host_local_kinds():
        try:
            removed.extend(get_provider(CloudSpec(kind, kind), home_path(home))
                           .cleanup_stale(known))
        except ProviderError as exc:  # e.g. qemu not installed: nothing of it to clean
            on_note(f"{kind}: {exc}")
    return removed


def clouds(*, home: Home = None, check: bool = False) -> tuple[CloudInfo, ...]:
    """The cloud catalog ($CLOUDINITD_HOME/clouds.yml), one entry per cloud (never a
    secret); with `check`, each provider's cheap call: `check` (its summary) or `error`."""
    from cloudinitd.catalog import describe_catalog, load_catalog

    where = home_path(home)
    return tuple(CloudInfo(**row) for row in describe_catalog(load_catalog(where), where,
                                                             check=check))


def exec(run: str, command: str, *, home: Home = None, services: tuple[str, ...] = (),  # noqa: A001
         sudo: bool = False, timeout: float | None = None,
         on_line: Callable[[str, str, str], None] | None = None) -> RunOutcome:
    """Run `command` on every live instance of the run (or of `services`) in parallel:
    one InstanceOutcome each (`exit`, `stdout`, `stderr`, or in `detail` why it never
    ran), a service ok when all its instances are. `on_line(label, stream, line)` gets
    output lines as they come. A run without such instances is a UsageError."""
    from cloudinitd.engine.access import instances, require_run
    from cloudinitd.engine.context import open_run
    from cloudinitd.engine.execute import run_command
    from cloudinitd.errors import UsageError

    with opened_store(home) as store:
        require_run(store, run)
        targets = instances(open_run(home_path(home), store, run), services)
    if not targets:
        raise UsageError(f"run {run!r} has no live instance"
                         + (f" of {', '.join(services)}" if services else ""))
    result = run_command(targets, command, run=run, sudo=sudo, timeout=timeout,
                         on_line=on_line)
    # History keeps that a command ran, where and how it ended; never its text,
    # which may hold a password (`exec -- mysql -psecret`).
    failed = ", ".join(r.label for r in result.failed_instances)
    with opened_store(home) as store:
        store.event(run, "exec", f"a command{' (sudo)' if sudo else ''} on"
                    f" {len(result.instances)} instance(s): "
                    + (f"{len(result.failed_instances)} failed ({failed})" if failed
                       else "all succeeded"))
    return result


def plan_outputs(run: str, *, home: Home = None) -> tuple[dict[str, str], dict[str, str]]:
    """The run's plan `outputs:` rendered with its live instances: (values, errors by name);
    nothing when the plan cannot be loaded any more."""
    from cloudinitd.engine.access import require_run, run_plan_outputs

    with opened_store(home) as store:
        require_run(store, run)
        return run_plan_outputs(store, home_path(home), run)


def outputs(run: str, selector: str | None = None, *, home: Home = None) -> Any:
    """Addresses and exported values of the run's live instances (per service, in
    dependency order); `SERVICE` its instances, `SERVICE.ATTR` one value per instance."""
    from cloudinitd.engine.access import outputs as read_outputs
    from cloudinitd.engine.access import require_run, select_output

    with opened_store(home) as store:
        require_run(store, run)
        return select_output(read_outputs(store, home_path(home), run), run, selector)


def instances(run: str, services: tuple[str, ...] = (), *, home: Home = None) -> list[Any]:
    """The run's live instances with an address (engine.access.Instance: service, index,
    address, and the SSH target to log in with), in dependency order."""
    from cloudinitd.engine.access import instances as live
    from cloudinitd.engine.access import require_run
    from cloudinitd.engine.context import open_run

    with opened_store(home) as store:
        require_run(store, run)
        return live(open_run(home_path(home), store, run), services)


def choose(run: str, selector: str | None, *, home: Home = None) -> Any:
    """The instance `SERVICE[/INDEX]` names, or the run's only one; else a UsageError
    listing them."""
    from cloudinitd.engine.access import choose as pick
    from cloudinitd.engine.access import require_run
    from cloudinitd.engine.context import open_run

    with opened_store(home) as store:
        require_run(store, run)
        return pick(open_run(home_path(home), store, run), selector)


def login_argv(instance: Any, command: list[str] | None = None, *, pin: bool = True
               ) -> list[str]:
    """The OpenSSH command line that logs in to `instance` as the engine does (the run's
    key, its pinned host keys only); with `pin`, a host never connected to is pinned
    first, trusting on first use as a boot step would."""
    from cloudinitd.engine.access import ensure_pinned, ssh_argv

    if pin:
        ensure_pinned(instance)
    return ssh_argv(instance.target, command)
