"""Acting on a recorded run: health checks, repair, scale."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from cloudinitd import overflow, schedule
from cloudinitd.engine.configure import run_ready
from cloudinitd.engine.context import RunContext, free_indexes
from cloudinitd.engine.converge import Converger, RunResult
from cloudinitd.engine.terminate import (
    TerminateResult,
    destroy_instances,
    forget,
    run_terminate_scripts,
)
from cloudinitd.errors import UsageError
from cloudinitd.providers.base import LIVE_STATES, RUNNING, TERMINATED


@dataclass
class Health:
    """Per-instance outcome of describing and ready-checking a run."""

    instances: list[dict[str, Any]] = field(default_factory=list)

    @property
    def unhealthy(self) -> set[tuple[str, int]]:
        return {(i["service"], i["index"]) for i in self.instances if not i["healthy"]}

    @property
    def ok(self) -> bool:
        return not self.unhealthy


def refresh(ctx: RunContext) -> list[dict[str, Any]]:
    """Ask each cloud about the run's live instances; record the ones that died."""
    rows = ctx.store.instances(ctx.run)
    by_cloud: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_cloud.setdefault(row["cloud"], []).append(row)
    for cloud, cloud_rows in by_cloud.items():
        infos = {i.instance_id: i for i in
                 ctx.provider(cloud).describe([r["instance_id"] for r in cloud_rows])}
        for row in cloud_rows:
            info = infos.get(row["instance_id"])
            state = info.state if info else TERMINATED
            if state != row["state"]:
                if state == TERMINATED:
                    forget(ctx, row)
                ctx.store.update_instance(ctx.run, cloud, row["instance_id"], state=state)
                ctx.store.event(ctx.run, "state", f"{row['instance_id']} is {state}",
                                row["service"], row["idx"])
    return ctx.store.instances(ctx.run)


def check(ctx: RunContext, run_ready_scripts: bool = True) -> Health:
    """Describe every instance and (optionally) run each ready script once."""
    rows = refresh(ctx)
    world = ctx.world()
    health = Health()
    jobs = []
    with ThreadPoolExecutor(schedule.ssh_fanout(len(rows))) as pool:
        for row in rows:
            svc = ctx.plan.services.get(row["service"])
            entry = {"service": row["service"], "index": row["idx"], "state": row["state"],
                     "address": row["address"], "healthy": row["state"] == RUNNING,
                     "detail": "" if row["state"] == RUNNING else f"instance is {row['state']}"}
            health.instances.append(entry)
            if (run_ready_scripts and entry["healthy"] and svc and "ready" in svc.scripts
                    and row["configured"]):
                ctx.progress(row["service"], row["idx"], "check", "running ready script")
                jobs.append((entry, pool.submit(run_ready, ctx, svc, row, world, once=True)))
        for entry, fut in jobs:
            exc = fut.exception()
            if exc is not None:
                entry["healthy"] = False
                entry["detail"] = f"ready script failed: {exc}"
    missing = _missing_instances(ctx, rows)
    for service, index in missing:
        health.instances.append({"service": service, "index": index, "state": "missing",
                                 "address": None, "healthy": False,
                                 "detail": "no live instance"})
    return health


def _missing_instances(ctx: RunContext, rows: list[dict[str, Any]]) -> list[tuple[str, int]]:
    missing = []
    for name, svc in ctx.plan.services.items():
        if svc.launches:
            have = {r["idx"] for r in rows if r["service"] == name}
            missing += [(name, i) for i in free_indexes(have, ctx.desired_count(svc))]
    return missing


def repair(ctx: RunContext) -> RunResult:
    """Re-launch what died, re-run what failed or fails its ready check, then re-configure
    every dependent whose rendered inputs changed (a new address, a new export)."""
    health = check(ctx)
    return Converger(ctx, unhealthy=health.unhealthy).run()


def scale(ctx: RunContext, service: str, count: int) -> tuple[TerminateResult, RunResult]:
    """Change one service's instance count, then converge the run (dependents included)."""
    svc = ctx.plan.services.get(service)
    if svc is None:
        raise UsageError(f"run {ctx.run!r} has no service {service!r}"
                         f" (services: {', '.join(sorted(ctx.plan.services))})")
    if not svc.launches:
        raise UsageError(f"service {service!r} runs on existing host {svc.host!r}; only"
                         " services that launch instances can be scaled")
    if count < 0:
        raise UsageError("instance count must be 0 or more")
    removed = TerminateResult(ctx.run)
    rows = [r for r in ctx.store.instances(ctx.run, service) if r["state"] in LIVE_STATES]
    victims = pick_victims(svc.clouds, rows, count)
    if victims:
        run_terminate_scripts(ctx, victims, removed)
        destroy_instances(ctx, victims, removed, sweep=False)
    counts = ctx.store.run(ctx.run)["counts"]
    counts[service] = count
    ctx.store.update_run(ctx.run, counts=counts)
    ctx.store.event(ctx.run, "scale", f"{service} -> {count}", service)
    return removed, Converger(ctx).run()


def pick_victims(placements, rows: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """Instances to remove when shrinking: last cloud first, highest index first."""
    current = Counter(r["cloud"] for r in rows)
    removals = overflow.scale_down(placements, dict(current), count)
    victims: list[dict[str, Any]] = []
    for cloud, n in removals.items():
        on_cloud = sorted((r for r in rows if r["cloud"] == cloud), key=lambda r: -r["idx"])
        victims.extend(on_cloud[:n])
    return victims
