"""`status`: a run as the store records it, merged with a health check when asked."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from cloudinitd.api.results import InstanceStatus, RunOutcome, RunStatus, ServiceStatus

if TYPE_CHECKING:
    from cloudinitd.store import Store


def recorded_status(store: Store, home: Path, run: str) -> RunStatus:
    """Services in the dependency order of the run's plan, each with its instances."""
    from cloudinitd.engine.access import dependency_order

    row = store.run(run)
    services = store.services(run)
    rows = store.instances(run)
    attrs = store.attributes(run)
    by_service: dict[str, list[InstanceStatus]] = {}
    for inst in rows:
        by_service.setdefault(inst.service, []).append(InstanceStatus(
            inst.idx, inst.state, inst.cloud, inst.instance_id, inst.address,
            inst.hostname, attrs.get((inst.service, inst.idx), {}), inst.extra))
    out: dict[str, ServiceStatus] = {}
    for name in dependency_order(store, home, run, set(services) | set(by_service)):
        svc = services.get(name)
        if svc is None:
            continue
        # Where a service's instance count comes from: the plan, or a `scale` of this
        # run (dropped again by `reload`).
        scaled = name in row.counts
        out[name] = ServiceStatus(name, svc.status, svc.step, svc.error,
                                  svc.log_path,
                                  int(row.counts[name]) if scaled else None,
                                  "scale" if scaled else "plan",
                                  tuple(by_service.get(name, ())))
    for name, items in by_service.items():  # instances of services the run never recorded
        if name not in out:
            out[name] = ServiceStatus(name, "unknown", instances=tuple(items))
    from cloudinitd.engine.access import run_plan_outputs

    values, problems = run_plan_outputs(store, home, run)
    return RunStatus(run, row.plan_name, row.plan_path, row.status, row.created,
                     row.expires, out, outputs=values, output_errors=problems)


def with_health(status: RunStatus, health: RunOutcome) -> RunStatus:
    """Each checked instance gets `healthy`/`detail`; a wanted instance with none is added
    as `missing`; one unhealthy instance makes its service and the run unhealthy."""
    services = dict(status.services)
    checked = {(i.service, i.index): i for i in health.instances}
    for name, svc in services.items():
        items = []
        for inst in svc.instances:
            found = checked.get((name, inst.index))
            items.append(replace(inst, healthy=found.ok, detail=found.detail) if found else inst)
        services[name] = replace(svc, instances=tuple(items))
    for item in health.instances:
        if item.state == "missing":
            svc = services.get(item.service) or ServiceStatus(item.service, "unhealthy")
            missing = InstanceStatus(item.index, "missing", "-", "-", healthy=False,
                                     detail=item.detail)
            services[item.service] = replace(svc, instances=(*svc.instances, missing))
    for item in health.failed_instances:
        services[item.service] = replace(services[item.service], status="unhealthy")
    return replace(status, services=services, healthy=health.ok,
                   status=status.status if health.ok else "unhealthy")
