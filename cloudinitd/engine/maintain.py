"""Acting on a recorded run: health checks, repair, scale."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cloudinitd import kinds, overflow, schedule
from cloudinitd.engine.configure import run_ready
from cloudinitd.engine.context import RunContext, free_indexes
from cloudinitd.engine.converge import Converger
from cloudinitd.engine.launcher import resume_intents
from cloudinitd.engine.outcome import InstanceOutcome, RunOutcome, by_service, in_order, instance_of
from cloudinitd.engine.terminate import destroy_instances, forget, run_terminate_scripts
from cloudinitd.errors import ProviderError, RemoteError, UsageError
from cloudinitd.plan.limits import LIMIT_ENV, Limits
from cloudinitd.providers.base import ERROR, LIVE_STATES, RUNNING, TERMINATED
from cloudinitd.records import Instance

# Run states after `terminate` (or a terminate that died): `repair` would launch
# the whole run again, which it does only when asked to (`--relaunch`).
TERMINATED_RUN_STATES = ("terminating", "terminated", "terminate-failed")


def refresh(ctx: RunContext) -> list[Instance]:
    """Ask each cloud about the run's live instances; record the ones that died."""
    rows = ctx.store.instances(ctx.run)
    by_cloud: dict[str, list[Instance]] = {}
    for row in rows:
        by_cloud.setdefault(row.cloud, []).append(row)
    for cloud, cloud_rows in by_cloud.items():
        infos = {i.instance_id: i for i in
                 ctx.provider(cloud).describe([r.instance_id for r in cloud_rows])}
        for row in cloud_rows:
            info = infos.get(row.instance_id)
            state = info.state if info else TERMINATED
            if state != row.state:
                if state == TERMINATED:
                    forget(ctx, row)
                ctx.store.update_instance(ctx.run, cloud, row.instance_id, state=state)
                ctx.store.event(ctx.run, "state", f"{row.instance_id} is {state}",
                                row.service, row.idx)
    return ctx.store.instances(ctx.run)


def check(ctx: RunContext, run_ready_scripts: bool = True) -> RunOutcome:
    """Describe every instance and (optionally) run each ready script once: one outcome
    per instance (a wanted one with none is `missing`), a service ok when all are."""
    rows = refresh(ctx)
    world = ctx.world()
    checked: list[InstanceOutcome] = []
    jobs = []
    with ThreadPoolExecutor(schedule.ssh_fanout(len(rows))) as pool:
        for row in rows:
            svc = ctx.plan.services.get(row.service)
            if row.state != RUNNING:
                checked.append(instance_of(row, False, detail=f"instance is {row.state}"))
            elif (run_ready_scripts and svc and "ready" in svc.scripts and row.configured):
                ctx.progress(row.service, row.idx, "check", "running ready script")
                jobs.append((row, pool.submit(run_ready, ctx, svc, row, world, once=True)))
            else:
                checked.append(instance_of(row))
        for row, fut in jobs:
            checked.append(_ready_checked(row, fut.exception()))
    checked += [InstanceOutcome(service, index, False, "missing", detail="no live instance")
                for service, index in _missing_instances(ctx, rows)]
    return by_service(ctx.run, in_order(ctx, checked))


def _ready_checked(row: Instance, exc: BaseException | None) -> InstanceOutcome:
    if exc is None:
        return instance_of(row)
    tail = {"log_tail": exc.log_tail, "log_path": exc.log_path} \
        if isinstance(exc, RemoteError) else {}
    return instance_of(row, False, detail=f"ready script failed: {exc}", step="ready", **tail)


def unhealthy(health: RunOutcome) -> set[tuple[str, int]]:
    """(service, index) of every instance a check found not ok."""
    return {(i.service, i.index) for i in health.failed_instances}


def _missing_instances(ctx: RunContext, rows: list[Instance]) -> list[tuple[str, int]]:
    missing = []
    for name, svc in ctx.plan.services.items():
        if svc.launches:
            have = {r.idx for r in rows if r.service == name}
            missing += [(name, i) for i in free_indexes(have, ctx.desired_count(svc))]
    return missing


def repair(ctx: RunContext, relaunch: bool = False) -> RunOutcome:
    """Re-launch what died, re-run what failed or fails its ready check, then re-configure
    every dependent whose rendered inputs changed (a new address, a new export).

    First it settles what a killed process left: launches it never heard the answer
    of are resumed with their own client tokens, instances the clouds report for the
    run but the store lacks are adopted (wanted index) or removed (surplus), and
    dead instances are terminated before their replacements are launched.
    """
    status = ctx.store.run(ctx.run).status
    if status in TERMINATED_RUN_STATES and not relaunch:
        raise UsageError(f"run {ctx.run!r} is {status}: `repair` would launch it all again;"
                         " say so with `cloudinitd repair --relaunch " + ctx.run + "`")
    if status in TERMINATED_RUN_STATES:
        ctx.store.event(ctx.run, "relaunch", f"repair --relaunch of a {status} run")
    ctx.store.event(ctx.run, "repair", f"repair of a {status} run")
    for svc in ctx.plan.services.values():
        if svc.launches:
            resume_intents(ctx, svc)
    refresh(ctx)  # first: a slot whose instance died may be filled by a stray
    adopt_strays(ctx)
    trim_surplus(ctx)
    health = check(ctx)
    remove_dead(ctx)
    return Converger(ctx, unhealthy=unhealthy(health)).run()


def trim_surplus(ctx: RunContext) -> RunOutcome:
    """More live instances than a service's count (a reload lowered it, a dead process
    left extras): remove them as `scale` would, last cloud and highest index first."""
    removed = RunOutcome(ctx.run)
    for name, svc in ctx.plan.services.items():
        if not svc.launches:
            continue
        rows = ctx.store.instances(ctx.run, name)
        victims = pick_victims(svc.clouds, rows, ctx.desired_count(svc))
        # Two live instances on one index (never wanted): keep the first.
        seen: set[int] = set()
        for row in sorted(rows, key=lambda r: r.id):
            if row.idx in seen and row not in victims:
                victims.append(row)
            seen.add(row.idx)
        if victims:
            ctx.store.event(ctx.run, "trim", f"{len(victims)} instance(s) over the count"
                            f" {ctx.desired_count(svc)}", name)
            removed = removed.plus(run_terminate_scripts(ctx, victims))
            removed = removed.plus(destroy_instances(ctx, victims, sweep=False))
    return removed


def _clouds_of_run(ctx: RunContext) -> set[str]:
    clouds = {r.cloud for r in ctx.store.instances(ctx.run, live_only=False)}
    clouds |= {launch.cloud for launch in ctx.store.launches(ctx.run)}
    return clouds - {kinds.HOSTS}


def adopt_strays(ctx: RunContext) -> list[str]:
    """Instances a cloud reports for the run (by tag) that the store does not know:
    adopt the ones filling a wanted, empty slot; terminate the rest. Returns the ids
    terminated."""
    removed: list[str] = []
    known = {(r.cloud, r.instance_id) for r in ctx.store.instances(ctx.run,
                                                                         live_only=False)}
    taken = {(r.service, r.idx) for r in ctx.store.instances(ctx.run)}
    for cloud in sorted(_clouds_of_run(ctx)):
        provider = ctx.provider(cloud)
        surplus = []
        for info in provider.find_run_instances(ctx.run):
            if (cloud, info.instance_id) in known:
                continue
            svc = ctx.plan.services.get(info.service or "")
            wanted = (svc is not None and svc.launches and info.index is not None
                      and info.state in LIVE_STATES
                      and any(p.cloud == cloud for p in svc.clouds)
                      and info.index < ctx.desired_count(svc)
                      and (svc.name, info.index) not in taken)
            if wanted:
                ctx.store.record_instance(ctx.run, svc.name, info.index, cloud, provider.kind,
                                          info)
                taken.add((svc.name, info.index))
                ctx.store.event(ctx.run, "adopted", f"{info.instance_id} on {cloud} (by tag)",
                                svc.name, info.index)
            else:
                surplus.append(info.instance_id)
                ctx.store.event(ctx.run, "stray", f"{info.instance_id} on {cloud}: not"
                                " wanted, terminating", info.service, info.index)
        if surplus:
            ctx.progress(cloud, None, "terminating", f"{len(surplus)} stray instance(s)")
            provider.terminate(surplus)
            removed += surplus
    return removed


def remove_dead(ctx: RunContext) -> None:
    """Terminate instances in error (a stopped container, a failed VM) before repair
    replaces them: a replacement must not leave the dead one behind."""
    dead = [r for r in ctx.store.instances(ctx.run, live_only=False) if r.state == ERROR]
    if dead:
        result = destroy_instances(ctx, dead, sweep=False)
        if result.errors:
            raise ProviderError("could not remove dead instances: " + "; ".join(result.errors))


def scale(ctx: RunContext, service: str, count: int,
          limits: Limits | None = None) -> tuple[RunOutcome, RunOutcome]:
    """Change one service's instance count, then converge the run (dependents included)."""
    removed = set_count(ctx, service, count, limits)
    ctx.store.event(ctx.run, "scale", f"{service} -> {count}", service)
    return removed, Converger(ctx).run()


def set_count(ctx: RunContext, service: str, count: int,
              limits: Limits | None = None) -> RunOutcome:
    """Record a service's new count and remove its instances over it (last cloud first);
    the caller converges (which launches what is missing and re-configures dependents)."""
    svc = ctx.plan.services.get(service)
    if svc is None:
        raise UsageError(f"run {ctx.run!r} has no service {service!r}"
                         f" (services: {', '.join(sorted(ctx.plan.services))})")
    if svc.hosts:
        raise UsageError(f"service {service!r} runs on the {len(svc.hosts)} host(s) its plan"
                         " lists (hosts:); a static service cannot be scaled: edit its hosts"
                         " and run `cloudinitd reload PLAN --name RUN`")
    if not svc.launches:
        raise UsageError(f"service {service!r} runs on existing host {svc.host!r}; only"
                         " services that launch instances can be scaled")
    if count < 0:
        raise UsageError("instance count must be 0 or more")
    _check_scale_limits(ctx, service, count, limits or Limits.from_env())
    removed = RunOutcome(ctx.run)
    rows = [r for r in ctx.store.instances(ctx.run, service) if r.state in LIVE_STATES]
    victims = pick_victims(svc.clouds, rows, count)
    if victims:
        removed = run_terminate_scripts(ctx, victims).plus(
            destroy_instances(ctx, victims, sweep=False))
    counts = ctx.store.run(ctx.run).counts
    counts[service] = count
    ctx.store.update_run(ctx.run, counts=counts)
    return removed


def _check_scale_limits(ctx: RunContext, service: str, count: int, limits: Limits) -> None:
    """The plan's instance limits hold for `scale` too: nothing is launched past them."""
    hint = f"(raise with --max-instances N or ${LIMIT_ENV})"
    if count > limits.per_service:
        raise UsageError(f"{service}: {count} instances is over the limit of "
                         f"{limits.per_service} per service {hint}")
    overrides = ctx.store.run(ctx.run).counts
    total = count + sum(overrides.get(name, spec.count)
                        for name, spec in ctx.plan.services.items()
                        if spec.launches and name != service)
    if total > limits.per_run:
        raise UsageError(f"{service}: the run would have {total} instances, over the limit of "
                         f"{limits.per_run} per run {hint}")


def pick_victims(placements, rows: list[Instance], count: int) -> list[Instance]:
    """Instances to remove when shrinking: last cloud first, highest index first."""
    current = Counter(r.cloud for r in rows)
    removals = overflow.scale_down(placements, dict(current), count)
    victims: list[Instance] = []
    for cloud, n in removals.items():
        on_cloud = sorted((r for r in rows if r.cloud == cloud), key=lambda r: -r.idx)
        victims.extend(on_cloud[:n])
    return victims


def record_reload(ctx: RunContext, path: Path, overrides: dict[str, str],
                  dropped: dict[str, int]) -> None:
    """`reload`: the run now follows the plan at `path` with `overrides` (its --var values);
    the plan is the source of truth, so the `scale` overrides (`dropped`) go, said in the
    event."""
    ctx.store.update_run(ctx.run, plan_path=str(path), vars=overrides, counts={})
    ctx.store.event(ctx.run, "reload", f"plan {path}"
                    + (f"; scale overrides dropped: {dropped}" if dropped else ""))
