"""What the public API returns: frozen dataclasses, one partial-failure shape.

Like Fabric's `GroupResult`: a run's outcome holds one `ServiceOutcome` per
service and one `InstanceOutcome` per instance, each with `ok` and, when not
ok, why (`detail`/`error`, the failed `step`, its `log_tail`; exec: `exit`,
`stdout`, `stderr`). Converge (boot, repair, scale, reload), health checks,
terminate and exec all answer in these shapes, which the engine itself builds
(engine/outcome.py, re-exported here); problems that belong to no single
instance (a cloud refusing a terminate) are the outcome's `errors`. Records
(status, history, runs, clouds) have their own classes below.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from cloudinitd.engine.outcome import InstanceOutcome, Interrupted, RunOutcome, ServiceOutcome

__all__ = ["CleanResult", "CloudInfo", "History", "InstanceOutcome", "InstanceStatus",
           "Interrupted", "LogFile", "RunOutcome", "RunStatus", "RunSummary", "ServiceOutcome",
           "ServiceStatus"]


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
