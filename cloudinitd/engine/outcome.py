"""The engine's one partial-failure shape: what converge, check, terminate and exec return.

Like Fabric's `GroupResult`: a `RunOutcome` holds one `ServiceOutcome` per
service and one `InstanceOutcome` per instance (per host), each with `ok` and,
when not ok, why: the step that failed, the error and the tail of its log
(exec: the exit status and the output). Problems that belong to no single
instance (a cloud refusing a terminate) are the outcome's `errors`. The
public API (cloudinitd.api) hands these same classes on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from cloudinitd.errors import CapacityError, PlanError, RemoteError

if TYPE_CHECKING:
    from cloudinitd.engine.context import RunContext
    from cloudinitd.records import Instance

READY, FAILED, SKIPPED = "ready", "failed", "skipped"  # as schedule.py names them


@dataclass(frozen=True)
class InstanceOutcome:
    """One instance (one host) of a run: what it is now and, when not `ok`, why."""

    service: str
    index: int
    ok: bool
    state: str  # running, pending, terminated, missing (a wanted instance with none), ...
    cloud: str | None = None
    instance_id: str | None = None
    address: str | None = None
    detail: str = ""  # why it is not ok (empty when it is)
    step: str | None = None  # the step that failed: launch, render, boot, ready, exec, ...
    log_tail: str = ""
    log_path: str | None = None
    # exec: the command's exit status (None: it never ran) and its output
    exit: int | None = None
    stdout: str = ""
    stderr: str = ""

    @property
    def label(self) -> str:
        return f"{self.service}/{self.index}"


@dataclass(frozen=True)
class ServiceOutcome:
    """One service: its state (ready, failed, skipped, unhealthy, ...), where it failed, its
    instances."""

    name: str
    state: str
    ok: bool
    step: str | None = None
    error: str | None = None
    log_tail: str = ""
    log_path: str | None = None
    seconds: float = 0.0
    instances: tuple[InstanceOutcome, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """The service entry of `--json` output (as it has always been: no instances)."""
        return {"name": self.name, "state": self.state, "step": self.step, "error": self.error,
                "log_tail": self.log_tail, "log_path": self.log_path, "seconds": self.seconds}


@dataclass(frozen=True)
class RunOutcome:
    """The result of boot, repair, scale, reload, check, terminate or exec on one run.

    `instances` are the run's live instances afterwards (check: every instance
    looked at, missing ones included; exec: every instance the command went to),
    in dependency order; `removed` the ones this call terminated; `errors`
    problems not tied to one instance.
    """

    run: str
    services: Mapping[str, ServiceOutcome] = field(default_factory=dict)
    instances: tuple[InstanceOutcome, ...] = ()
    removed: tuple[InstanceOutcome, ...] = ()
    errors: tuple[str, ...] = ()
    seconds: float = 0.0
    # reload: the `scale` counts the new plan replaced (service -> count)
    dropped_scale_overrides: Mapping[str, int] = field(default_factory=dict)
    # boot: the plan's `outputs:` rendered with the run's world, and those that could not be
    outputs: Mapping[str, str] = field(default_factory=dict)
    output_errors: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return (not self.errors and all(s.ok for s in self.services.values())
                and all(i.ok for i in self.instances) and all(i.ok for i in self.removed))

    @property
    def failed(self) -> tuple[ServiceOutcome, ...]:
        """Services that failed (not the ones skipped because of them)."""
        return tuple(s for s in self.services.values() if s.state == FAILED)

    @property
    def skipped(self) -> tuple[ServiceOutcome, ...]:
        return tuple(s for s in self.services.values() if s.state == SKIPPED)

    @property
    def failed_instances(self) -> tuple[InstanceOutcome, ...]:
        return tuple(i for i in (*self.instances, *self.removed) if not i.ok)

    def addresses(self) -> dict[str, list[InstanceOutcome]]:
        """Live instances with their addresses per service, in dependency order."""
        out: dict[str, list[InstanceOutcome]] = {}
        for inst in self.instances:
            out.setdefault(inst.service, []).append(inst)
        return out

    def plus(self, other: RunOutcome) -> RunOutcome:
        """This outcome with `other`'s removed instances and errors after its own (the
        parts of one terminate: scripts, then each cloud)."""
        return replace(self, removed=(*self.removed, *other.removed),
                       errors=(*self.errors, *other.errors))


class Interrupted(Exception):  # noqa: N818 (a Ctrl-C, not an error of the run)
    """Ctrl-C during a converge: no new launch was started, every launch under way recorded.

    `live` lists what lives now; `unsettled` counts launches still unanswered
    (their instances are found again by `repair` and `terminate`, by token and tag).
    """

    def __init__(self, run: str, live: tuple[InstanceOutcome, ...] = (), unsettled: int = 0):
        super().__init__(f"run {run}: interrupted")
        self.run, self.live, self.unsettled = run, live, unsettled


def failure(name: str, exc: BaseException, step: str) -> ServiceOutcome:
    """A failed step as the outcome says it: a script's step and log tail, a render, a
    cloud out of capacity, anything else named by the step it broke."""
    if isinstance(exc, RemoteError):
        return ServiceOutcome(name, FAILED, False, exc.step, str(exc), exc.log_tail,
                              exc.log_path)
    if isinstance(exc, PlanError):
        return ServiceOutcome(name, FAILED, False, "render", str(exc))
    if isinstance(exc, CapacityError):
        return ServiceOutcome(name, FAILED, False, "launch", f"{name}: capacity: {exc}")
    return ServiceOutcome(name, FAILED, False, step, f"{name}: {step} failed: {exc}")


def instance_of(row: Instance, ok: bool = True, **why: Any) -> InstanceOutcome:
    """A recorded instance in the outcome's shape (`why`: detail, step, log_tail, ...)."""
    return InstanceOutcome(row.service, row.idx, ok, row.state, row.cloud, row.instance_id,
                           row.address, **why)


def removed(row: Instance) -> InstanceOutcome:
    """An instance this call terminated."""
    return InstanceOutcome(row.service, row.idx, True, "terminated", row.cloud,
                           row.instance_id, row.address)


def in_order(ctx: RunContext, items: Iterable[InstanceOutcome]) -> tuple[InstanceOutcome, ...]:
    """Services in dependency order, then by index (stable: equal keys keep their order)."""
    from cloudinitd.engine.access import service_order

    items = list(items)
    rank = {name: i for i, name in enumerate(service_order(ctx, {i.service for i in items}))}
    return tuple(sorted(items, key=lambda i: (rank[i.service], i.index)))


def live_instances(ctx: RunContext, services: Mapping[str, ServiceOutcome] | None = None,
                   own: Mapping[tuple[str, int], ServiceOutcome] | None = None,
                   whole: Iterable[str] = ()) -> tuple[InstanceOutcome, ...]:
    """The run's live instances after a converge, each ok or not with why.

    An instance of a ready service is ok. In a failed service the instance that
    failed carries its own step, error and log tail (`own`); a sibling that is
    configured is ok (its host did what it was asked), unless the service failed
    as a whole (`whole`: launch, render) or was skipped, when every instance
    carries the service's error.
    """
    services, own = services or {}, own or {}
    out = []
    for row in sorted(ctx.store.instances(ctx.run), key=lambda r: r.id):
        svc = services.get(row.service)
        mine = own.get((row.service, row.idx))
        if mine is not None:
            out.append(instance_of(row, False, detail=mine.error or FAILED, step=mine.step,
                                   log_tail=mine.log_tail, log_path=mine.log_path))
        elif svc is None or svc.state == READY or (
                svc.state == FAILED and row.configured and row.service not in whole):
            out.append(instance_of(row))
        else:
            out.append(instance_of(row, False, detail=svc.error or svc.state, step=svc.step))
    return in_order(ctx, out)


def by_service(run: str, instances: tuple[InstanceOutcome, ...], bad: str = "unhealthy",
               **extra: Any) -> RunOutcome:
    """Per-instance results (check, exec) with a service entry each: ok when all its
    instances are, else `bad`."""
    services: dict[str, ServiceOutcome] = {}
    for inst in instances:
        mine = tuple(i for i in instances if i.service == inst.service)
        ok = all(i.ok for i in mine)
        services[inst.service] = ServiceOutcome(inst.service, READY if ok else bad, ok,
                                                instances=mine)
    return RunOutcome(run, services, instances, **extra)
