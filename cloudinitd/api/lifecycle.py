"""Driving runs: load, dry_run, boot, status, check, repair, scale, reload, terminate.

Each call takes plain arguments (the home folder, a run name, a plan path,
options) and a progress callback `(service, index or None, state, detail)`,
opens what it needs for itself and closes it again, and returns a frozen
result (results.py). Bad input and failures of the call itself raise the
cloudinitd.errors classes; failures of services and instances are data in
the result (`ok`, `failed`, `errors`). Ctrl-C during a converge raises
`Interrupted`, naming what lives.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cloudinitd.api.home import home_path, opened_store
from cloudinitd.api.results import RunOutcome, RunStatus

if TYPE_CHECKING:
    from cloudinitd.engine.context import RunContext
    from cloudinitd.plan.model import Plan

Progress = Callable[[str, int | None, str, str], None]
Note = Callable[[str], None]  # a line for the operator (what was dropped, imported, ...)
Home = str | Path | None


def quiet(service: str, index: int | None, state: str, detail: str) -> None:
    """The default progress callback: nothing."""


def _silent(note: str) -> None:
    return None


def plan_file(plan: str | Path, home: Home = None, on_note: Note = _silent) -> Path:
    """A plan file, a folder with plan.yml, a shipped plan's name, or an original TOP.conf
    (converted into the home's imports first)."""
    from cloudinitd.errors import UsageError
    from cloudinitd.paths import find_plan, is_original_plan

    arg = str(plan)
    if is_original_plan(arg):
        from cloudinitd.importer import import_dir, import_plan  # only for a TOP.conf

        path, notes = import_plan(Path(arg), import_dir(home_path(home), Path(arg)))
        for note in notes:
            on_note(f"import: {note}")
        arg = str(path)
    try:
        return find_plan(arg)
    except (OSError, ValueError) as exc:  # a name too long for the file system, a NUL byte
        raise UsageError(f"no plan {arg[:80]!r}: {getattr(exc, 'strerror', None) or exc}") \
            from None


def load(plan: str | Path, *, home: Home = None, vars: Mapping[str, str] | None = None,
         max_instances: int | None = None, on_note: Note = _silent) -> Plan:
    """Load and check a plan (nothing launched); raises PlanError/PlanErrors/UsageError."""
    from cloudinitd.catalog import load_catalog
    from cloudinitd.plan.limits import Limits
    from cloudinitd.plan.loader import load_plan
    from cloudinitd.sandbox import SESSION_SECONDS, render_session

    limits = Limits.from_env(max_instances)
    path = plan_file(plan, home, on_note)
    with render_session(SESSION_SECONDS):  # count / host templates of every service
        return load_plan(path, overrides=dict(vars or {}),
                         catalog=load_catalog(home_path(home)), limits=limits)


def dry_run(plan: Plan, run: str | None = None, show_values: bool = False) -> dict[str, Any]:
    """Every script of every instance rendered against placeholder addresses (or, with
    `show_values`, realistic sample values); the schedule."""
    from cloudinitd.engine.boot import dry_run as render
    from cloudinitd.sandbox import SESSION_SECONDS, render_session

    with render_session(SESSION_SECONDS):
        return render(plan, run or f"{plan.name}-dry-run", show_values=show_values)


def run_plan(run: str, *, home: Home = None) -> Plan:
    """The plan a recorded run follows, loaded with its vars (PlanError if it cannot be)."""
    with opened_store(home) as store:
        return _open(store, home, run, quiet).plan


def boot(plan: Plan | str | Path, *, home: Home = None, name: str | None = None,
         vars: Mapping[str, str] | None = None, max_instances: int | None = None,
         progress: Progress = quiet, on_start: Callable[[str], Any] | None = None,
         on_note: Note = _silent) -> RunOutcome:
    """Record a new run of `plan` (a loaded Plan, or what `load` takes), launch and
    configure it. `on_start(run)` is called once the run is recorded, before any launch."""
    from cloudinitd.engine.access import plan_outputs
    from cloudinitd.engine.boot import boot as converge
    from cloudinitd.engine.boot import start_run

    overrides = dict(vars or {})
    if not hasattr(plan, "services"):
        plan = load(plan, home=home, vars=overrides, max_instances=max_instances,
                    on_note=on_note)
    with opened_store(home) as store:
        ctx = start_run(home_path(home), store, plan, overrides, name,
                        progress=progress)
        if on_start is not None:
            on_start(ctx.run)
        result = converge(ctx)
        values, problems = plan_outputs(ctx)
        return replace(result, outputs=values, output_errors=problems)


def _open(store: Any, home: Home, run: str, progress: Progress, plan: Path | None = None,
          overrides: dict[str, str] | None = None) -> RunContext:
    from cloudinitd.engine.context import open_run

    return open_run(home_path(home), store, run, plan_path=plan, overrides=overrides,
                    progress=progress)


def status(run: str, *, home: Home = None, check: bool = False,
           progress: Progress = quiet) -> RunStatus:
    """The run from the store; with `check`, instances described and ready scripts run first."""
    from cloudinitd.api.statusview import recorded_status, with_health

    with opened_store(home) as store:
        store.run(run)  # an unknown run is RunNotFound before its plan is loaded
        health = _check(store, home, run, progress) if check else None
        recorded = recorded_status(store, home_path(home), run)
        return with_health(recorded, health) if health is not None else recorded


def _check(store: Any, home: Home, run: str, progress: Progress) -> RunOutcome:
    from cloudinitd.engine.maintain import check as check_run

    return check_run(_open(store, home, run, progress))


def check(run: str, *, home: Home = None, progress: Progress = quiet) -> RunOutcome:
    """Describe every instance and run each ready script once: one outcome per instance
    (missing ones included), a service ok when all its instances are."""
    with opened_store(home) as store:
        return _check(store, home, run, progress)


def repair(run: str, *, home: Home = None, relaunch: bool = False,
           progress: Progress = quiet) -> RunOutcome:
    """Re-launch / re-boot what is unhealthy, then re-configure dependents whose inputs
    changed. A terminated run is launched again only with `relaunch`."""
    from cloudinitd.engine.maintain import repair as repair_run

    with opened_store(home) as store:
        ctx = _open(store, home, run, progress)
        return repair_run(ctx, relaunch=relaunch)


def scale(run: str, service: str, count: int, *, home: Home = None,
          max_instances: int | None = None, progress: Progress = quiet) -> RunOutcome:
    """Change one service's instance count (overflow policy applies), then converge;
    `removed` holds the instances taken away."""
    from cloudinitd.engine.maintain import scale as scale_run
    from cloudinitd.plan.limits import Limits

    limits = Limits.from_env(max_instances)
    with opened_store(home) as store:
        ctx = _open(store, home, run, progress)
        removed, result = scale_run(ctx, service, count, limits)
        return result.plus(removed)


def reload(plan: str | Path, run: str, *, home: Home = None,
           vars: Mapping[str, str] | None = None, progress: Progress = quiet,
           on_note: Note = _silent) -> RunOutcome:
    """Load an edited plan into an existing run (its --var overrides kept, `vars` over
    them), then repair it. The plan is the source of truth afterwards: `scale` counts are
    dropped (each said through `on_note`)."""
    from cloudinitd.engine.maintain import record_reload
    from cloudinitd.engine.maintain import repair as repair_run

    path = plan_file(plan, home, on_note).resolve()
    with opened_store(home) as store:
        recorded = store.run(run)
        overrides = {**recorded.vars, **dict(vars or {})}
        ctx = _open(store, home, run, progress, plan=path, overrides=overrides)
        dropped = dict(recorded.counts)
        for service, count in sorted(dropped.items()):
            svc = ctx.plan.services.get(service)
            now = (f"the plan's count {svc.count} applies" if svc
                   else "service no longer in the plan")
            on_note(f"reload: dropped the scale override {service}={count} ({now})")
        record_reload(ctx, path, overrides, dropped)
        return replace(repair_run(ctx), dropped_scale_overrides=dropped)


def terminate(run: str, *, home: Home = None, progress: Progress = quiet,
              on_note: Note = _silent) -> RunOutcome:
    """Terminate scripts in reverse dependency order, then the instances (found by tag
    too); waits until they are gone. Without its plan, the instances still go (said
    through `on_note`). `removed` holds what was terminated, `errors` what was not."""
    from cloudinitd.engine.context import open_run_without_plan
    from cloudinitd.engine.terminate import terminate_run
    from cloudinitd.errors import PlanError

    with opened_store(home) as store:
        try:
            ctx = _open(store, home, run, progress)
        except PlanError as exc:
            on_note(f"{exc}; terminating instances without running terminate scripts")
            ctx = open_run_without_plan(home_path(home), store, run,
                                        progress=progress)
        return terminate_run(ctx)
