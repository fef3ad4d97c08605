"""Typed, resolved form of a plan. Built by `cloudinitd.plan.loader.load_plan`.

Everything here is plain data: the engine, the graph, the scheduler and the
providers read it; nothing here talks to a cloud or a host.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Attributes every instance has without exporting them (DESIGN.md).
BUILTIN_ATTRIBUTES = frozenset(
    {"address", "private_address", "hostname", "instance_id", "cloud", "index", "name"}
)
# Attributes a service has beyond those of its instances.
SERVICE_ATTRIBUTES = frozenset({"instances", "count"})

STEPS = ("boot", "ready", "terminate")
# Run names are `<plan name>-<n>` unless given: the plan name leaves room for the suffix.
MAX_PLAN_NAME = 50


@dataclass(frozen=True)
class Pos:
    """Where something stands in a plan file (1-based line)."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class CloudSpec:
    """A named cloud: which provider drives it and that provider's options.

    `options` holds everything but `provider` (endpoint, region, credentials
    *references* such as a profile name; never a secret).
    """

    name: str
    provider: str
    options: dict[str, Any] = field(default_factory=dict)
    pos: Pos | None = None


@dataclass(frozen=True)
class CloudPlacement:
    """One entry of a service's overflow list: launch on `cloud`, at most `max` (-1 = no limit)."""

    cloud: str
    max: int = -1


@dataclass(frozen=True)
class ScriptSpec:
    """A boot/ready/terminate script: the plan's reference and the file it resolved to."""

    ref: str
    path: Path
    source: str
    pos: Pos | None = None
    args: list[str] = field(default_factory=list)  # templates, one argument each
    args_pos: list[Pos] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)  # uploaded beside the script


@dataclass(frozen=True)
class AutoscaleSpec:
    """`autoscale:`: keep a service between `min` and `max` instances by a sensor's readings.

    The sensor is a step printing one number: run on each instance, or once on
    this machine when the plan says `local: true` inside `autoscale:`. Either
    `above`/`below` thresholds (add or remove `step` instances) or a `target`
    value per instance (the count that brings the mean reading to it).
    """

    min: int
    max: int
    sensor: ScriptSpec
    local: bool = False
    above: float | None = None
    below: float | None = None
    step: int = 1
    target: float | None = None
    cooldown: float = 60.0  # seconds between two scaling actions of the service


# The address recorded for a `local: true` service (this machine).
LOCAL_ADDRESS = "127.0.0.1"


@dataclass(frozen=True)
class StaticHost:
    """One existing machine of a `hosts:` service (plan/inventory.py): where SSH goes,
    and where the address was written (the plan, or an inventory file)."""

    address: str
    port: int | None  # None: the service's ssh_port
    file: str
    line: int


@dataclass
class ServiceSpec:
    name: str
    pos: Pos
    clouds: list[CloudPlacement]  # empty for services on an existing `host`
    count: int = 1
    image: str | None = None
    size: str | None = None
    after: list[str] = field(default_factory=list)
    host: str | None = None  # an address, or the name of another service
    ssh_user: str = "root"
    ssh_key: Path | None = None  # None: the run's own key
    ssh_port: int = 22
    scripts: dict[str, ScriptSpec] = field(default_factory=dict)  # keys from STEPS
    exports: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    timeout: float = 1200.0  # seconds, per step
    lifetime: float | None = None  # seconds
    spot: dict[str, Any] | None = None
    options: dict[str, Any] = field(default_factory=dict)  # provider extras (user_data, ...)
    values: dict[str, str] = field(default_factory=dict)  # name -> template, read as attributes
    adopt: list[str] = field(default_factory=list)  # `instance_id:`: existing instances
    terminate_adopted: bool = False  # terminate also ends adopted instances
    local: bool = False  # `local: true`: its steps run on this machine (remote/local.py)
    # `hosts:`: existing machines, one instance each (count is their number).
    hosts: list[StaticHost] = field(default_factory=list)
    preserve: bool = False  # `watch` replaces its dead or unhealthy instances
    autoscale: AutoscaleSpec | None = None  # `watch` scales it by a sensor
    field_pos: dict[str, Pos] = field(default_factory=dict)  # key -> where it was written

    @property
    def launches(self) -> bool:
        """True when the service creates instances (False for `host:` / `hosts:` services)."""
        return self.host is None and not self.hosts

    def ssh_port_of(self, index: int) -> int:
        """The SSH port of instance `index`: its `hosts:` entry's port, else `ssh_port`."""
        if 0 <= index < len(self.hosts) and self.hosts[index].port is not None:
            return self.hosts[index].port
        return self.ssh_port

    def pos_of(self, key: str) -> Pos:
        return self.field_pos.get(key, self.pos)


@dataclass
class Plan:
    name: str
    path: Path
    vars: dict[str, Any]
    clouds: dict[str, CloudSpec]
    services: dict[str, ServiceSpec]
    lifetime: float | None = None
    # Plan-level `outputs:` (name -> template) and where each was written.
    outputs: dict[str, str] = field(default_factory=dict)
    outputs_pos: dict[str, Pos] = field(default_factory=dict)
    preserve: bool = False  # the run-level default of every launching service's `preserve`

    @property
    def directory(self) -> Path:
        return self.path.parent
