"""`memory`: an in-process cloud for tests, told by data to fail, stall or lose instances.

Once `cloudinitd.testing` is imported (it registers the kind and its keys),
a plan uses it like any cloud (`clouds: {mem: {provider: memory, capacity: 2}}`).
Its instances live in a `MemoryCloud` kept per (CLOUDINITD_HOME, cloud name)
for the life of the process, so a `boot` and the `repair` after it see the
same machines. Addresses come from 192.0.2.0/24 (documentation range): they
are never contacted, the fake remote (`cloudinitd.testing.remote`) answers.

Faults are data, from the cloud entry or set between steps with
`MemoryCloud.faults.update(...)`:
- `capacity: N`: at most N live instances on this cloud; the launch that
  would exceed it raises CapacityError naming what it did start;
- `fail_launch: MESSAGE`: every launch raises ProviderError(MESSAGE);
- `stall: true`: instances never reach running (wait_running times out at once);
- `fail_terminate: MESSAGE`: terminate raises ProviderError(MESSAGE).
`hold()` makes the next launches wait inside the cloud call until `release()`
(a call under way when Ctrl-C comes); `held` is set once one waits.
`lose(service, index)` makes an instance vanish, `crash(...)` puts it in error.
Like EC2's ClientToken, a launch with a token seen before makes nothing new for
the indexes that token already got: it reports those instances again.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

from cloudinitd.cloudspec import register_provider_schema
from cloudinitd.errors import CapacityError, ProviderError
from cloudinitd.plan.model import CloudSpec
from cloudinitd.providers import Kind, register_kind
from cloudinitd.providers.base import (
    ERROR,
    LIVE_STATES,
    PENDING,
    RUNNING,
    TERMINATED,
    InstanceInfo,
    LaunchRequest,
    OnLaunched,
    Provider,
)

# The keys a `memory` cloud entry may hold (the provider describes its own options).
OPTIONS_SCHEMA: dict[str, Any] = {
    "capacity": {"type": "integer", "minimum": 0, "x-expect": "a whole number (0 or more)"},
    "fail_launch": {"type": "string", "maxLength": 255, "x-expect": "an error message"},
    "fail_terminate": {"type": "string", "maxLength": 255, "x-expect": "an error message"},
    "stall": {"type": "boolean", "x-expect": "true or false"},
}


@dataclass
class MemoryCloud:
    """The machines of one `memory` cloud, and the faults it is told to show."""

    name: str
    faults: dict[str, Any] = field(default_factory=dict)
    instances: dict[str, InstanceInfo] = field(default_factory=dict)
    tags: dict[str, dict[str, str]] = field(default_factory=dict)
    launches: list[tuple[str, list[int]]] = field(default_factory=list)  # (service, indexes)
    terminated: list[str] = field(default_factory=list)
    by_token: dict[tuple[str, int], str] = field(default_factory=dict)  # (token, index) -> id
    _ids: Any = field(default_factory=lambda: itertools.count(1))
    lock: threading.RLock = field(default_factory=threading.RLock)
    threads: list[str] = field(default_factory=list)  # the worker of each launch call
    gate: threading.Event | None = None  # set: launches go on (see hold)
    held: threading.Event = field(default_factory=threading.Event)

    def hold(self) -> None:
        self.gate = threading.Event()

    def release(self) -> None:
        if self.gate is not None:
            self.gate.set()

    def live(self) -> list[InstanceInfo]:
        return [i for i in self.instances.values() if i.state in LIVE_STATES]

    def find(self, service: str, index: int) -> InstanceInfo:
        for info in self.live():
            if info.service == service and info.index == index:
                return info
        raise KeyError(f"no live instance {service}-{index} on {self.name}")

    def lose(self, service: str, index: int) -> str:
        """The instance vanishes (the cloud reclaimed it); returns its id."""
        with self.lock:
            info = self.find(service, index)
            info.state = TERMINATED
            return info.instance_id

    def crash(self, service: str, index: int) -> str:
        """The instance is still there but dead (state `error`); returns its id."""
        with self.lock:
            info = self.find(service, index)
            info.state = ERROR
            return info.instance_id


_CLOUDS: dict[tuple[str, str], MemoryCloud] = {}
_CLOUDS_LOCK = threading.Lock()


def memory_cloud(home: Path | str, name: str) -> MemoryCloud:
    """The one MemoryCloud for `name` under `home` (made on first use)."""
    key = (str(Path(home).resolve()), name)
    with _CLOUDS_LOCK:
        if key not in _CLOUDS:
            _CLOUDS[key] = MemoryCloud(name)
        return _CLOUDS[key]


def forget_clouds(home: Path | str) -> None:
    """Drop every MemoryCloud under `home` (a test's teardown)."""
    prefix = str(Path(home).resolve())
    with _CLOUDS_LOCK:
        for key in [k for k in _CLOUDS if k[0] == prefix]:
            del _CLOUDS[key]


class MemoryProvider(Provider):
    kind = "memory"
    options_schema: ClassVar[dict[str, Any]] = OPTIONS_SCHEMA

    def __init__(self, cloud: CloudSpec, home: Path):
        super().__init__(cloud, home)
        self.state = memory_cloud(home, cloud.name)

    def _fault(self, name: str) -> Any:
        return self.state.faults.get(name, self.cloud.options.get(name))

    def launch(self, request: LaunchRequest, on_launched: OnLaunched) -> list[InstanceInfo]:
        cloud = self.state
        cloud.threads.append(threading.current_thread().name)
        if cloud.gate is not None:  # an answer that takes its time (hold/release)
            cloud.held.set()
            cloud.gate.wait(60)
        with cloud.lock:
            if self._fault("fail_launch"):
                raise ProviderError(f"{self.cloud.name}: {self._fault('fail_launch')}")
            cloud.launches.append((request.service, list(request.indexes)))
            capacity = self._fault("capacity")
            started: list[InstanceInfo] = []
            for index, hostname in zip(request.indexes, request.hostnames, strict=True):
                known = cloud.by_token.get((request.client_token, index))
                if known is not None:  # the same token again: the same instance
                    on_launched(index, replace(cloud.instances[known]))
                    started.append(replace(cloud.instances[known]))
                    continue
                if capacity is not None and len(cloud.live()) >= capacity:
                    raise CapacityError(f"{self.cloud.name}: full ({capacity} instances)",
                                        launched=started)
                n = next(cloud._ids)
                info = InstanceInfo(instance_id=f"mem-{self.cloud.name}-{n}", state=PENDING,
                                    hostname=hostname, index=index, service=request.service)
                cloud.instances[info.instance_id] = info
                cloud.tags[info.instance_id] = {**request.tags, "index": str(index)}
                cloud.by_token[(request.client_token, index)] = info.instance_id
                on_launched(index, replace(info))
                started.append(replace(info))
            return started

    def wait_running(self, instance_ids: Sequence[str], timeout: float) -> list[InstanceInfo]:
        with self.state.lock:
            if self._fault("stall"):
                raise ProviderError(f"{self.cloud.name}: instances {', '.join(instance_ids)}"
                                    f" not running after {timeout:.0f}s")
            for iid in instance_ids:
                info = self.state.instances.get(iid)
                if info is not None and info.state == PENDING:
                    n = int(iid.rpartition("-")[2])
                    info.state = RUNNING
                    info.address = f"192.0.2.{n % 250 + 1}"
                    info.private_address = f"10.0.{n // 250}.{n % 250 + 1}"
            return self.describe(instance_ids)

    def describe(self, instance_ids: Sequence[str]) -> list[InstanceInfo]:
        with self.state.lock:
            out = []
            for iid in instance_ids:
                info = self.state.instances.get(iid)
                out.append(replace(info) if info else InstanceInfo(iid, state=TERMINATED))
            return out

    def terminate(self, instance_ids: Sequence[str], timeout: float = 600.0) -> None:
        with self.state.lock:
            if self._fault("fail_terminate"):
                raise ProviderError(f"{self.cloud.name}: {self._fault('fail_terminate')}")
            for iid in instance_ids:
                info = self.state.instances.get(iid)
                if info is not None:
                    info.state = TERMINATED
                    self.state.terminated.append(iid)

    def find_run_instances(self, run: str) -> list[InstanceInfo]:
        with self.state.lock:
            return [replace(i) for i in self.state.live()
                    if self.state.tags[i.instance_id].get("cloudinitd:run") == run]


# A kind and its keys join the registries together, when this module is imported.
register_kind(MemoryProvider.kind, Kind(f"{__name__}:MemoryProvider",
                                        doc="in-process test double (cloudinitd.testing)"))
register_provider_schema(MemoryProvider.kind, OPTIONS_SCHEMA)
