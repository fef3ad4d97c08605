"""What the public API returns: frozen dataclasses, one partial-failure shape.

Like Fabric's `GroupResult`: a run's outcome holds one `ServiceOutcome` per
service and one `InstanceOutcome` per instance, each with `ok` and, when not
ok, why (`detail` / `error`). Converge (boot, repair, scale, reload), health
checks and terminate all answer in these shapes; problems that belong to no
single service (a cloud refusing a terminate) are the outcome's `errors`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class InstanceOutcome:
    """One instance of a run: what it is now and, when not `ok`, why."""

    service: str
    index: int
    ok: bool
    state: str  # running, pending, terminated, missing (a wanted instance with none), ...
    cloud: str | None = None
    instance_id: str | None = None
    address: str | None = None
    detail: str = ""

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
    """The result of boot, repair, scale, reload, check or terminate of one run.

    `instances` are the run's live instances afterwards (check: every instance
    looked at, missing ones included), in dependency order; `removed` the ones
    this call terminated; `errors` problems not tied to one service.
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
        return tuple(s for s in self.services.values() if s.state == "failed")

    @property
    def skipped(self) -> tuple[ServiceOutcome, ...]:
        return tuple(s for s in self.services.values() if s.state == "skipped")

    @property
    def failed_instances(self) -> tuple[InstanceOutcome, ...]:
        return tuple(i for i in (*self.instances, *self.removed) if not i.ok)

    def addresses(self) -> dict[str, list[InstanceOutcome]]:
        """Live instances with their addresses per service, in dependency order."""
        out: dict[str, list[InstanceOutcome]] = {}
        for inst in self.instances:
            out.setdefault(inst.service, []).append(inst)
        return out


@dataclass(frozen=True)
class InstanceStatus:
    """One instance as the store records it (status), with its health when checked."""

    index: int
    state: str
    cloud: str
    instance_id: str
    address: str | None = None
    hostname: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)  # what its scripts exported
    extra: Mapping[str, Any] = field(default_factory=dict)  # provider facts (accel, lifecycle)
    healthy: bool | None = None  # None: not checked
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        if self.state == "missing":
            out: dict[str, Any] = {"index": self.index, "state": "missing", "address": None,
                                   "cloud": "-", "instance_id": "-"}
        else:
            out = {"index": self.index, "cloud": self.cloud, "instance_id": self.instance_id,
                   "state": self.state, "address": self.address, "hostname": self.hostname,
                   "attributes": dict(self.attributes), **self.extra}
        if self.healthy is not None:
            out.update(healthy=self.healthy, detail=self.detail)
        return out


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    status: str
    step: str | None = None
    error: str | None = None
    log: str | None = None
    count: int | None = None  # set when `scale` chose it
    count_source: str | None = None  # "plan" or "scale"; None: not recorded as a service
    instances: tuple[InstanceStatus, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status}
        if self.count_source is not None:  # a service the run recorded
            out.update(step=self.step, error=self.error, log=self.log,
                       count_source=self.count_source)
            if self.count is not None:
                out["count"] = self.count
        out["instances"] = [i.as_dict() for i in self.instances]
        return out


@dataclass(frozen=True)
class RunStatus:
    """`status`: the run, its services in dependency order, their instances."""

    run: str
    plan: str
    plan_path: str
    status: str
    created: float
    expires: float | None
    services: Mapping[str, ServiceStatus]
    healthy: bool | None = None  # None: not checked
    outputs: Mapping[str, str] = field(default_factory=dict)  # the plan's `outputs:`, rendered
    output_errors: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ready" and self.healthy is not False

    def as_dict(self) -> dict[str, Any]:
        out = {"run": self.run, "plan": self.plan, "plan_path": self.plan_path,
               "status": self.status, "created": self.created, "expires": self.expires,
               "services": {n: s.as_dict() for n, s in self.services.items()}}
        out["outputs"], out["output_errors"] = dict(self.outputs), dict(self.output_errors)
        if self.healthy is not None:
            out["healthy"] = self.healthy
        return out


@dataclass(frozen=True)
class RunSummary:
    """One line of `list`."""

    name: str
    plan_name: str
    plan_path: str
    status: str
    created: float
    updated: float
    expires: float | None
    live_instances: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class History:
    """Every instance a run ever launched and its events (store records)."""

    run: str
    instances: tuple[Any, ...]  # cloudinitd.records.Instance
    events: tuple[Any, ...]  # cloudinitd.records.Event

    def as_dict(self) -> dict[str, Any]:
        return {"run": self.run, "instances": [i.as_dict() for i in self.instances],
                "events": [e.as_dict() for e in self.events]}


@dataclass(frozen=True)
class CloudInfo:
    """One cloud of the catalog (never a secret); with a check, its summary or its failure."""

    name: str
    provider: str
    endpoint: str | None
    region: str | None
    credentials: str
    source: str | None
    check: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class LogFile:
    path: str
    text: str


@dataclass(frozen=True)
class CleanResult:
    """`clean RUN` (removed, forgotten) or `clean` (expired runs, stale local instances)."""

    run: str | None = None
    removed: tuple[InstanceOutcome, ...] = ()
    forgotten: bool = False
    expired: tuple[str, ...] = ()
    stale: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.errors


class Interrupted(Exception):  # noqa: N818 (a Ctrl-C, not an error of the run)
    """Ctrl-C during a converge: no new launch was started, every launch under way recorded.

    `live` lists what lives now; `unsettled` counts launches still unanswered
    (their instances are found again by `repair` and `terminate`, by token and tag).
    """

    def __init__(self, run: str, live: tuple[InstanceOutcome, ...], unsettled: int):
        super().__init__(f"run {run}: interrupted")
        self.run, self.live, self.unsettled = run, live, unsettled
