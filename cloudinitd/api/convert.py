"""From the engine's working shapes (ServiceResult, Health, TerminateResult, store rows)
to the API's one partial-failure shape (results.py)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cloudinitd.api.results import InstanceOutcome, RunOutcome, ServiceOutcome
from cloudinitd.paths import cloudinitd_home

if TYPE_CHECKING:
    from cloudinitd.engine.context import RunContext
    from cloudinitd.engine.converge import RunResult
    from cloudinitd.engine.maintain import Health
    from cloudinitd.engine.terminate import TerminateResult
    from cloudinitd.store import Store

def home_path(home: str | Path | None) -> Path:
    """`home` as given, else $CLOUDINITD_HOME (default ~/.cloudinitd)."""
    return Path(home).expanduser() if home is not None else cloudinitd_home()


@contextlib.contextmanager
def opened_store(home: str | Path | None) -> Iterator[Store]:
    """The home's run store for one call, closed after it (a library keeps no handle)."""
    from cloudinitd.store import Store

    store = Store(home_path(home))
    try:
        yield store
    finally:
        store.close()


def live_instances(ctx: RunContext, failed: dict[str, str] | None = None,
                   ) -> tuple[InstanceOutcome, ...]:
    """The run's live instances, services in dependency order, then by index; an
    instance of a service in `failed` (name -> why) is not ok."""
    from cloudinitd.engine.access import service_order

    failed = failed or {}
    rows = ctx.store.instances(ctx.run)
    rank = {name: i for i, name in enumerate(service_order(ctx, {r.service for r in rows}))}
    return tuple(
        InstanceOutcome(r.service, r.idx, r.service not in failed, r.state,
                        r.cloud, r.instance_id, r.address, failed.get(r.service, ""))
        for r in sorted(rows, key=lambda r: (rank[r.service], r.idx, r.id)))


def removed_instances(items: list[dict[str, Any]]) -> tuple[InstanceOutcome, ...]:
    return tuple(InstanceOutcome(i["service"], i["index"], True, "terminated", i["cloud"],
                                 i["instance_id"]) for i in items)


def run_outcome(ctx: RunContext, result: RunResult, removed: TerminateResult | None = None,
                with_outputs: bool = False, **extra: Any) -> RunOutcome:
    """A converge's RunResult (+ what it terminated first) with the run's live instances
    (and, `with_outputs`, the plan's `outputs:` rendered with them)."""
    if with_outputs:
        from cloudinitd.engine.access import plan_outputs

        extra["outputs"], extra["output_errors"] = plan_outputs(ctx)
    instances = live_instances(ctx, {n: s.error or s.state for n, s in result.services.items()
                                     if s.state != "ready"})
    services = {}
    for name, svc in result.services.items():
        services[name] = ServiceOutcome(
            name, svc.state, svc.state == "ready", svc.step, svc.error, svc.log_tail,
            svc.log_path, svc.seconds, tuple(i for i in instances if i.service == name))
    return RunOutcome(ctx.run, services, instances,
                      removed_instances(removed.terminated) if removed else (),
                      tuple(removed.errors) if removed else (), result.seconds, **extra)


def health_outcome(run: str, health: Health) -> RunOutcome:
    """`check`: every instance looked at (missing ones too); a service is ok when all are."""
    instances = tuple(
        InstanceOutcome(i["service"], i["index"], i["healthy"], i["state"], i.get("cloud"),
                        i.get("instance_id"), i["address"], i["detail"])
        for i in health.instances)
    services = {}
    for inst in instances:
        mine = tuple(i for i in instances if i.service == inst.service)
        ok = all(i.ok for i in mine)
        services[inst.service] = ServiceOutcome(inst.service, "ready" if ok else "unhealthy", ok,
                                                instances=mine)
    return RunOutcome(run, services, instances)


def terminate_outcome(result: TerminateResult) -> RunOutcome:
    return RunOutcome(result.run, removed=removed_instances(result.terminated),
                      errors=tuple(result.errors))
