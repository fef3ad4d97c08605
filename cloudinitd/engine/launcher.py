"""Launching a service's instances on its clouds, recording each before waiting on it.

Placement follows Phantom's n-preserving overflow policy (`overflow.py`):
fill the service's clouds in order up to each one's `max`; a cloud that
answers a capacity error counts as full and the rest spills to the next.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections import Counter
from typing import Any

from cloudinitd import kinds, overflow
from cloudinitd.engine.context import RunContext, free_indexes, hostname_for
from cloudinitd.errors import CapacityError, ProviderError
from cloudinitd.plan.model import CloudPlacement, ServiceSpec
from cloudinitd.providers.base import LIVE_STATES, RUNNING, InstanceInfo, LaunchRequest
from cloudinitd.remote.hostkeys import pin_host


def run_tags(ctx: RunContext, service: str) -> dict[str, str]:
    return {"cloudinitd:run": ctx.run, "cloudinitd:service": service,
            "cloudinitd:plan": ctx.plan.name}


def _request(ctx: RunContext, svc: ServiceSpec, cloud: str, indexes: list[int],
             options: dict[str, Any] | None = None) -> LaunchRequest:
    return LaunchRequest(
        run=ctx.run, plan=ctx.plan.name, service=svc.name, cloud=cloud, indexes=indexes,
        client_token=f"cid-{uuid.uuid4().hex}", tags=run_tags(ctx, svc.name),
        ssh_user=svc.ssh_user, ssh_public_key=ctx.keypair()[1],
        hostnames=[hostname_for(svc.name, i) for i in indexes], image=svc.image,
        size=svc.size, spot=svc.spot, options={**svc.options, **(options or {})},
        expires=lease_end(ctx, svc),
    )


def lease_end(ctx: RunContext, svc: ServiceSpec) -> float | None:
    """When the service's instances must be gone (epoch seconds), counted from the run's
    creation: the provider also enforces it, so it holds while no controller runs."""
    if svc.lifetime is None:
        return None
    return float(ctx.store.run(ctx.run).created) + svc.lifetime


def _launch_on(ctx: RunContext, svc: ServiceSpec, cloud: str, request: LaunchRequest) -> set[int]:
    """One provider call; returns the indexes that got an instance (recorded as they came)."""
    provider = ctx.provider(cloud)
    ctx.store.record_launch_intent(ctx.run, svc.name, cloud, request.client_token,
                                   request.indexes, request.tags)
    started: set[int] = set()

    def on_launched(index: int, info: InstanceInfo) -> None:
        _pin(ctx, svc, info)
        ctx.store.record_instance(ctx.run, svc.name, index, cloud, provider.kind, info,
                                  request.client_token)
        ctx.store.event(ctx.run, "launched", f"{info.instance_id} on {cloud}", svc.name, index)
        ctx.progress(svc.name, index, "launched", f"{info.instance_id} on {cloud}")
        started.add(index)

    try:
        provider.launch(request, on_launched)
    except CapacityError as err:
        ctx.store.finish_launch(request.client_token, "capacity")
        err.started_indexes = started  # what the cloud did start before it was full
        raise
    except Exception:
        ctx.store.finish_launch(request.client_token, "failed")
        raise
    ctx.store.finish_launch(request.client_token, "done")
    return started


class Stopped(Exception):
    """Ctrl-C: no new cloud call was made; what was launched is recorded."""


def resume_intents(ctx: RunContext, svc: ServiceSpec) -> int:
    """Re-issue launches a dead process left unfinished, with their own client tokens.

    A launch intent still `requested` means the process died inside the cloud
    call: the cloud may have made some or all of its instances without the store
    hearing of them. The same token again makes nothing new (EC2's ClientToken,
    the local provider's sidecars): it reports what exists, and creates or
    starts the rest, so `repair` never launches duplicates. Returns how many
    intents were resumed.
    """
    resumed = 0
    for launch in ctx.store.launches(ctx.run):
        if (launch.service != svc.name or launch.status != "requested"
                or launch.cloud == kinds.HOSTS):
            continue
        request = _request(ctx, svc, launch.cloud, launch.indexes)
        request.client_token, request.tags = launch.client_token, launch.tags
        ctx.store.event(ctx.run, "resume", f"launch {launch.client_token} on"
                        f" {launch.cloud} (indexes {launch.indexes})", svc.name)
        ctx.progress(svc.name, None, "resuming", f"unfinished launch on {launch.cloud}")
        resumed += 1
        # A full cloud is recorded as "capacity"; launch_missing places the rest elsewhere.
        with contextlib.suppress(CapacityError):
            _launch_on(ctx, svc, launch.cloud, request)
    return resumed


def launch_service(ctx: RunContext, svc: ServiceSpec,
                   stop: threading.Event | None = None) -> None:
    """Bring `svc` to its desired count of running instances: resume, launch, wait."""
    resume_intents(ctx, svc)
    live = {r.idx for r in ctx.store.instances(ctx.run, svc.name)}
    launch_missing(ctx, svc, free_indexes(live, ctx.desired_count(svc)), stop)
    if stop is not None and stop.is_set():
        raise Stopped()
    # Always: instances recorded earlier may never have been started or reached running.
    wait_running(ctx, svc)


def launch_missing(ctx: RunContext, svc: ServiceSpec, indexes: list[int],
                   stop: threading.Event | None = None) -> None:
    """Create instances for `indexes`, spilling across clouds (not waiting for them)."""
    if not indexes:
        return
    if svc.adopt:
        adopt(ctx, svc, indexes)
        wait_running(ctx, svc)
        return
    live = ctx.store.instances(ctx.run, svc.name)
    current = Counter(row.cloud for row in live)
    full: set[str] = set(ctx.avoid_clouds)  # clouds in back-off count as full
    remaining = sorted(indexes)
    while remaining:
        target = sum(current.values()) + len(remaining)
        adds = overflow.scale_up(svc.clouds, dict(current), target, full)
        if not any(adds.values()):
            raise CapacityError(
                f"no room for {len(remaining)} more instance(s) of {svc.name!r}:"
                f" clouds full or at their max ({_describe(svc.clouds, current, full)})")
        for cloud, n in adds.items():
            if not n:
                continue
            if stop is not None and stop.is_set():
                raise Stopped()
            chunk, remaining = remaining[:n], remaining[n:]
            ctx.progress(svc.name, None, "launching", f"{len(chunk)} on {cloud}")
            try:
                started = _launch_on(ctx, svc, cloud, _request(ctx, svc, cloud, chunk))
            except CapacityError as err:
                full.add(cloud)
                ctx.store.event(ctx.run, "capacity", f"{cloud} full: {err}", svc.name)
                ctx.progress(svc.name, None, "capacity", f"{cloud} full, spilling over")
                started = err.started_indexes
            current[cloud] += len(started)
            remaining = sorted(set(remaining) | (set(chunk) - started))


ADOPTED = "adopted"  # the client_token of an instance taken in by `instance_id:`


def adopt(ctx: RunContext, svc: ServiceSpec, indexes: list[int]) -> None:
    """Record existing instances (`instance_id:`) as the service's, launching nothing."""
    cloud = svc.clouds[0].cloud
    ids = [svc.adopt[i] for i in indexes if i < len(svc.adopt)]
    infos = {info.instance_id: info for info in ctx.provider(cloud).describe(ids)}
    for index in indexes:
        info = infos.get(svc.adopt[index])
        if info is None or info.state not in LIVE_STATES:
            raise ProviderError(f"{svc.name}: instance {svc.adopt[index]} on {cloud} is not"
                                f" there to adopt ({info.state if info else 'unknown'})")
        ctx.store.record_instance(ctx.run, svc.name, index, cloud, ctx.provider(cloud).kind,
                                  info, ADOPTED)
        ctx.store.event(ctx.run, "adopted", f"{info.instance_id} on {cloud}", svc.name, index)
        ctx.progress(svc.name, index, "adopted", f"{info.instance_id} on {cloud}")


def launch_static(ctx: RunContext, svc: ServiceSpec) -> None:
    """Services on existing hosts: one 'instance' per address (or per host-service instance)."""
    if svc.host in ctx.plan.services:
        rows = ctx.store.instances(ctx.run, svc.host)
        addresses = [r.address for r in sorted(rows, key=lambda r: r.idx)]
    elif svc.hosts:  # `hosts:`: one instance per listed machine
        addresses = [h.address for h in svc.hosts]
    else:
        addresses = [svc.host]
    have = {r.idx for r in ctx.store.instances(ctx.run, svc.name)}
    missing = [i for i in range(len(addresses)) if i not in have]
    if missing:
        request = _request(ctx, svc, kinds.HOSTS, missing,
                           {"addresses": [addresses[i] for i in missing]})
        _launch_on(ctx, svc, kinds.HOSTS, request)


def wait_running(ctx: RunContext, svc: ServiceSpec) -> None:
    pending = [r for r in ctx.store.instances(ctx.run, svc.name)
               if r.state != RUNNING or not r.address]
    by_cloud: dict[str, list[str]] = {}
    for row in pending:
        by_cloud.setdefault(row.cloud, []).append(row.instance_id)
    for cloud, ids in by_cloud.items():
        ctx.progress(svc.name, None, "waiting", f"{len(ids)} instance(s) on {cloud}")
        for info in ctx.provider(cloud).wait_running(ids, svc.timeout):
            _pin(ctx, svc, info)
            ctx.store.update_from_info(ctx.run, cloud, info)
            if info.state != RUNNING or not info.address:
                raise ProviderError(f"{svc.name}: instance {info.instance_id} on {cloud} is"
                                    f" {info.state} without an address")


def _pin(ctx: RunContext, svc: ServiceSpec, info: InstanceInfo) -> None:
    """A host key the provider made is pinned before anything connects (no TOFU)."""
    if info.host_key and info.address:
        pin_host(ctx.known_hosts, info.address, svc.ssh_port, info.host_key)


def _describe(placements: list[CloudPlacement], current: Counter, full: set[str]) -> str:
    parts = []
    for p in placements:
        limit = "no limit" if p.max < 0 else f"max {p.max}"
        state = ", full" if p.cloud in full else ""
        parts.append(f"{p.cloud}: {current.get(p.cloud, 0)} running, {limit}{state}")
    return "; ".join(parts)
