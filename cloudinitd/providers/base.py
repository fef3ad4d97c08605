"""The one small interface every provider implements.

A provider turns launch requests into instances on one cloud and can find,
describe and terminate them again. The engine owns ordering, recording and
SSH; a provider never touches the run store and never runs plan scripts.

Recording contract (leak-proofing, see DESIGN.md "State"): the engine writes
the request's `client_token` and tags to the store *before* calling
`launch`, and `launch` must call `on_launched(index, info)` as soon as each
instance id is known, *before* waiting for anything. `find_run_instances`
must find a run's instances even when the store never got their ids (by
tags, names or whatever the cloud offers).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from cloudinitd.errors import UsageError
from cloudinitd.plan.model import CloudSpec

# Instance states, normalised across providers.
PENDING = "pending"
RUNNING = "running"
STOPPING = "stopping"
TERMINATED = "terminated"
ERROR = "error"
LIVE_STATES = frozenset({PENDING, RUNNING, STOPPING})


@dataclass
class InstanceInfo:
    """What a provider knows about one instance. Never holds secrets."""

    instance_id: str
    state: str = PENDING
    address: str | None = None  # what SSH uses
    private_address: str | None = None
    hostname: str | None = None
    index: int | None = None  # replica index, when the provider knows it (from tags)
    service: str | None = None  # from tags, for find_run_instances
    extra: dict[str, Any] = field(default_factory=dict)  # provider facts worth showing
    # `ssh-ed25519 AAAA...` when the provider made the instance's host key
    # itself: the engine pins it before the first connection (no TOFU).
    host_key: str | None = None

    @classmethod
    def from_record(cls, instance_id: str, state: str, record: Mapping[str, Any],
                    extra: dict[str, Any]) -> InstanceInfo:
        """An instance of this machine from the record its provider keeps beside it
        (local, qemu): one address, both public and private; index and service as launched."""
        return cls(instance_id=instance_id, state=state, address=record.get("address"),
                   private_address=record.get("address"), hostname=record.get("hostname"),
                   index=record.get("index"), service=record.get("service"), extra=extra,
                   host_key=record.get("host_key"))


@dataclass
class LaunchRequest:
    run: str
    plan: str
    service: str
    cloud: str
    indexes: list[int]  # replica indexes to create, one instance each
    client_token: str  # idempotency token, already recorded by the engine
    tags: dict[str, str]  # run, service, plan (+ per-index "index" added by provider)
    ssh_user: str
    ssh_public_key: str  # OpenSSH public key line to authorise for ssh_user
    hostnames: list[str]  # one per index, e.g. "compute-0"
    image: str | None = None
    size: str | None = None
    spot: dict[str, Any] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    # Lease end (epoch seconds): a provider that can make the instance end itself
    # then does (ec2: shutdown = terminate; local: a timer on this machine).
    expires: float | None = None


OnLaunched = Callable[[int, InstanceInfo], None]
Say = Callable[[str], None]  # a progress line for the operator
Sent = Callable[[int], None]  # bytes just handled, for a progress bar


def say_nothing(_: str) -> None:
    """The default `Say`: no progress lines."""


@dataclass
class SaveRequest:
    """`image save`: which instance becomes which image, and how."""

    instance_id: str
    name: str
    run: str
    source: str  # "RUN/service-index", recorded with the image
    stop: bool = False  # the instance goes after the save: it may be shut down for it
    timeout: float = 1800.0


class Provider(ABC):
    """Base class. Subclasses set `kind` (the `provider:` value in a cloud entry)."""

    kind: ClassVar[str]
    # `image save` runs `sync` in the guest over SSH first: the guest's page cache
    # is not in the disk the provider copies (a VM's), unlike a container's.
    flush_before_save: ClassVar[bool] = False

    def __init__(self, cloud: CloudSpec, home: Path):
        self.cloud = cloud
        self.home = home  # $CLOUDINITD_HOME: providers keep their own files below it
        # Progress lines while it works (a first base-image build, a restart): the
        # engine points this at its own progress callback, so nothing a provider
        # says is printed behind the live table.
        self.say: Say = say_nothing

    @abstractmethod
    def launch(self, request: LaunchRequest, on_launched: OnLaunched) -> list[InstanceInfo]:
        """Create one instance per index in `request.indexes`.

        Call `on_launched(index, info)` as soon as each id is known. Return the
        infos (state may still be pending). Raise `CapacityError` (with the
        instances it did start in `.launched`) when the cloud is full.
        """

    @abstractmethod
    def wait_running(self, instance_ids: Sequence[str], timeout: float) -> list[InstanceInfo]:
        """Block until each instance is running and has an address; return fresh infos."""

    @abstractmethod
    def describe(self, instance_ids: Sequence[str]) -> list[InstanceInfo]:
        """Current state of these instances; unknown ids come back as TERMINATED."""

    @abstractmethod
    def terminate(self, instance_ids: Sequence[str], timeout: float = 600.0) -> None:
        """Destroy these instances and wait until they are really gone."""

    @abstractmethod
    def find_run_instances(self, run: str) -> list[InstanceInfo]:
        """Every live instance of `run` on this cloud, found without the store."""

    def check(self) -> str:
        """Verify credentials / prerequisites with one cheap call; return a one-line summary.

        Raise ProviderError with a clear message when something is missing.
        """
        return "ok"

    def release(self, run: str) -> None:  # noqa: B027 - optional hook
        """Called after a run's instances on this cloud are all terminated.

        Providers that share host resources between runs (a bridge, a proxy)
        drop them here when no other run uses them.
        """

    def cleanup_stale(self, live_runs: Collection[str]) -> list[str]:
        """For `cloudinitd clean`: remove this provider's instances whose run is gone."""
        return []

    def home_address(self) -> str | None:
        """Address at which instances reach the machine running cloudinitd, if any."""
        return None

    # --- images (`cloudinitd image ...`); each kind says what it can do -------------
    # Rows and results are plain dicts for --json: at least `name`, `image_id`,
    # `size` (bytes or None) and `created`; never a secret.

    def _no_images(self, what: str) -> UsageError:
        return UsageError(f"`image {what}`: {self.kind} clouds have no images "
                          f"({self.cloud.name!r} is a {self.kind} cloud)")

    def check_image_name(self, name: str) -> str:
        """The kind's rule for image names (a UsageError, exit 2, when `name` breaks it)."""
        raise self._no_images("name")

    def build_image(self, name: str, say: Say = say_nothing) -> Path:
        """Build (once) and cache a built-in base image; return where it is."""
        raise self._no_images("build")

    def list_images(self) -> list[dict[str, Any]]:
        """The images this cloud offers the user, newest first."""
        raise self._no_images("list")

    def save_image(self, request: SaveRequest, say: Say = say_nothing) -> dict[str, Any]:
        """Capture a running instance as image `request.name`, bootable as `image: NAME`."""
        raise self._no_images("save")

    def import_image(self, path: Path, name: str, sent: Sent, say: Say = say_nothing) -> dict[str, Any]:
        """Stage the file `path` as image `name` (verified first); `sent(n)` shows progress."""
        raise self._no_images("stage")

    def delete_image(self, name: str, force: bool = False) -> dict[str, Any]:
        """Remove (unstage) image `name`; `force` also takes images in use."""
        raise self._no_images("delete")

    def has_image(self, name: str) -> bool:
        return any(row.get("name") == name for row in self.list_images())
