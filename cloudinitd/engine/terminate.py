"""Terminating a run (or some of its instances): scripts in reverse order, then instances.

Terminate continues past errors (a dead host must not keep the rest alive),
asks every cloud the run used for instances tagged with the run (so ones the
store never heard of go too), waits until they are gone, and keeps every
row: history is never deleted here.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from cloudinitd import kinds
from cloudinitd.engine.configure import run_terminate
from cloudinitd.engine.context import RunContext
from cloudinitd.engine.converge import ssh_pool_size
from cloudinitd.engine.launcher import ADOPTED
from cloudinitd.engine.outcome import RunOutcome, removed
from cloudinitd.graph import boot_levels, build_graph
from cloudinitd.homeshare import stop_home_share
from cloudinitd.providers.base import TERMINATED, InstanceInfo
from cloudinitd.records import Instance


def _script_order(ctx: RunContext) -> list[list[str]]:
    if not ctx.plan.services:
        return []
    return list(reversed(boot_levels(build_graph(ctx.plan))))


def run_terminate_scripts(ctx: RunContext, rows: list[Instance]) -> RunOutcome:
    """Terminate scripts level by level, dependents first; a failure is noted (the
    outcome's `errors`), not fatal."""
    errors: list[str] = []
    world = ctx.world()
    by_service: dict[str, list[Instance]] = {}
    for row in rows:
        by_service.setdefault(row.service, []).append(row)
    levels = _script_order(ctx)
    with ThreadPoolExecutor(ssh_pool_size(len(rows))) as pool:
        for level in levels:
            jobs = []
            for name in level:
                svc = ctx.plan.services[name]
                if "terminate" not in svc.scripts:
                    continue
                for row in by_service.get(name, []):
                    if row.configured and row.address:
                        ctx.progress(name, row.idx, "terminating", "running terminate script")
                        jobs.append((row, pool.submit(run_terminate, ctx, svc, row, world)))
            for row, fut in jobs:
                exc = fut.exception()
                if exc is not None:
                    errors.append(f"{row.service}-{row.idx}: terminate script: {exc}")
                    ctx.store.event(ctx.run, "error", f"terminate script: {exc}", row.service,
                                    row.idx)
    return RunOutcome(ctx.run, errors=tuple(errors))


def _clouds_used(ctx: RunContext) -> set[str]:
    clouds = {r.cloud for r in ctx.store.instances(ctx.run, live_only=False)}
    clouds |= {launch.cloud for launch in ctx.store.launches(ctx.run)}
    return clouds


def destroy_instances(ctx: RunContext, rows: Iterable[Instance], sweep: bool) -> RunOutcome:
    """Provider terminate per cloud; with `sweep`, also whatever the cloud finds by tag.
    `removed`: what went; `errors`: each cloud that refused (the others still went)."""
    gone: list[Instance] = []
    errors: list[str] = []
    by_cloud: dict[str, list[Instance]] = {}
    for row in rows:
        if _keep_adopted(ctx, row):
            continue
        by_cloud.setdefault(row.cloud, []).append(row)
    clouds = set(by_cloud) | (_clouds_used(ctx) if sweep else set())
    for cloud in sorted(clouds):
        known = by_cloud.get(cloud, [])
        ids = [r.instance_id for r in known]
        try:
            provider = ctx.provider(cloud)
            if sweep:
                leaked = [i for i in provider.find_run_instances(ctx.run) if i.instance_id not in ids]
                for info in leaked:
                    ctx.store.event(ctx.run, "leak", f"found {info.instance_id} on {cloud} by tag")
                    ids.append(info.instance_id)
                    known.append(_leaked(ctx.run, cloud, provider.kind, info))
            if ids:
                ctx.progress(cloud, None, "terminating", f"{len(ids)} instance(s)")
                provider.terminate(ids)
            if sweep:
                provider.release(ctx.run)
        except Exception as exc:  # keep going: other clouds still get their terminate
            errors.append(f"{cloud}: {exc}")
            ctx.store.event(ctx.run, "error", f"terminate on {cloud}: {exc}")
            continue
        for row in known:
            forget(ctx, row)
        with ctx.store.transaction():  # one commit for the cloud's whole answer
            for row in known:
                ctx.store.update_instance(ctx.run, cloud, row.instance_id, state=TERMINATED)
                ctx.store.event(ctx.run, "terminated", row.instance_id, row.service,
                                row.idx)
        gone += known
    return RunOutcome(ctx.run, removed=tuple(removed(row) for row in gone),
                      errors=tuple(errors))


def _leaked(run: str, cloud: str, kind: str, info: InstanceInfo) -> Instance:
    """An instance a cloud found by tag that the store never heard of, as a record (without
    its address: no host key of ours was pinned for it)."""
    return Instance(0, run, info.service or "?", info.index or 0, cloud, kind, info.instance_id,
                    None, info.state, None, None, info.hostname, None, 0, 0.0, None)


def _keep_adopted(ctx: RunContext, row: Instance) -> bool:
    """An instance the run adopted (`instance_id:`) outlives it unless `terminate_adopted`."""
    if row.client_token != ADOPTED:
        return False
    svc = ctx.plan.services.get(row.service)
    if svc is not None and svc.terminate_adopted:
        return False
    ctx.store.update_instance(ctx.run, row.cloud, row.instance_id, row.service,
                              state=TERMINATED)
    ctx.store.event(ctx.run, "released", f"{row.instance_id} left running (adopted)",
                    row.service, row.idx)
    return True


def forget(ctx: RunContext, row: Instance) -> None:
    """A gone instance's address may come back with another machine: unpin its host key."""
    svc = ctx.plan.services.get(row.service)
    if row.address and row.cloud != kinds.HOSTS:
        ctx.remote.forget_host(ctx.known_hosts, row.address, svc.ssh_port if svc else 22)


def terminate_run(ctx: RunContext) -> RunOutcome:
    """The whole run: `removed` what was terminated, `errors` what was not."""
    ctx.store.update_run(ctx.run, status="terminating")
    rows = ctx.store.instances(ctx.run)
    ctx.store.event(ctx.run, "terminate", f"terminate of {len(rows)} live instance(s)")
    result = run_terminate_scripts(ctx, rows)
    _remove_remote_dirs(ctx, [r for r in rows if r.cloud == kinds.HOSTS])
    result = result.plus(destroy_instances(ctx, rows, sweep=True))
    if stop_home_share(ctx.run_dir):
        ctx.store.event(ctx.run, "terminated", "home share stopped")
    for name in ctx.plan.services:
        ctx.store.set_service(ctx.run, name, TERMINATED)
    ctx.store.update_run(ctx.run, status="terminated" if result.ok else "terminate-failed")
    return result


def _remove_remote_dirs(ctx: RunContext, rows: list[Instance]) -> None:
    """Existing hosts outlive the run: take our private script folders off them."""
    jobs = []
    # In the SSH pool, not one host after another (each may need a fresh connection).
    with ThreadPoolExecutor(ssh_pool_size(len(rows))) as pool:
        for row in rows:
            svc = ctx.plan.services.get(row.service)
            if svc is None or not row.address:
                continue
            jobs.append((row, pool.submit(ctx.remote.remove_run_dir, ctx.target(svc, row),
                                          ctx.run)))
        for row, fut in jobs:
            exc = fut.exception()
            if exc is not None:  # best effort; the host may be gone
                ctx.store.event(ctx.run, "warning", f"could not remove remote folder: {exc}",
                                row.service, row.idx)
