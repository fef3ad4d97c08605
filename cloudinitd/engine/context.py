"""Everything one command needs about one run: plan, store, key, providers, targets."""

from __future__ import annotations

import functools
import hashlib
import json
import re
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from cloudinitd import kinds
from cloudinitd import remote as remote_module
from cloudinitd.catalog import load_catalog
from cloudinitd.errors import PlanError
from cloudinitd.graph import context_uses
from cloudinitd.keys import ensure_run_keypair
from cloudinitd.plan.loader import load_plan
from cloudinitd.plan.model import CloudSpec, Plan, ServiceSpec
from cloudinitd.providers import get_provider
from cloudinitd.providers.base import Provider
from cloudinitd.records import Instance
from cloudinitd.remote import LocalTarget, SshTarget
from cloudinitd.store import Store
from cloudinitd.templates import placeholder_extra

# A progress callback: (service, index or None, state, detail).
Progress = Callable[[str, int | None, str, str], None]


def quiet(service: str, index: int | None, state: str, detail: str) -> None:
    """Default progress sink."""


def hostname_for(service: str, index: int) -> str:
    """A valid hostname per instance (RFC 1123): `compute-0`."""
    base = re.sub(r"[^a-z0-9-]+", "-", service.lower()).strip("-") or "svc"
    return f"{base}-{index}"[:63]


def free_indexes(have: set[int], count: int) -> list[int]:
    """Indexes for the instances still needed to reach `count`: the lowest unused ones."""
    needed, out, i = max(0, count - len(have)), [], 0
    while len(out) < needed:
        if i not in have:
            out.append(i)
        i += 1
    return out


def content_hash(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class RunContext:
    home: Path
    store: Store
    plan: Plan
    run: str
    progress: Progress = quiet
    # The engine's SSH steps go through here; a test puts cloudinitd.testing.FakeRemote.
    remote: Any = remote_module
    # Clouds `watch` keeps away from for now (back-off): placed as if full, so
    # launches overflow to the next cloud of the service.
    avoid_clouds: set[str] = field(default_factory=set)
    _providers: dict[str, Provider] = field(default_factory=dict)
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _home: dict[str, Any] | None = None

    @property
    def run_dir(self) -> Path:
        return self.store.run_dir(self.run)

    @property
    def known_hosts(self) -> Path:
        return self.run_dir / "known_hosts"

    def log_path(self, service: str, index: int, step: str) -> Path:
        return self.run_dir / "logs" / f"{service}-{index}.{step}.log"

    def keypair(self) -> tuple[Path, str]:
        with self._lock:
            return ensure_run_keypair(self.run_dir)

    def provider(self, cloud: str) -> Provider:
        with self._lock:
            if cloud not in self._providers:
                made = get_provider(self.cloud_spec(cloud), self.home)
                made.say = functools.partial(self._provider_says, f"cloud {cloud}")
                self._providers[cloud] = made
            return self._providers[cloud]

    def _provider_says(self, label: str, message: str) -> None:
        # A row of its own ("cloud NAME": no service name has a space) in the progress.
        self.progress(label, None, "cloud", message)

    def cloud_spec(self, cloud: str) -> CloudSpec:
        """The plan's entry, else the one recorded at boot (the plan may have changed)."""
        if cloud == kinds.HOSTS:  # existing hosts: no entry, no options
            return CloudSpec(name=kinds.HOSTS, provider=kinds.HOSTS)
        if cloud in self.plan.clouds:
            return self.plan.clouds[cloud]
        recorded = self.store.run(self.run).clouds.get(cloud)
        if recorded is None:
            raise PlanError(f"run {self.run!r} uses cloud {cloud!r}, which neither the plan"
                            " nor the run's record defines")
        return CloudSpec(name=cloud, provider=recorded["provider"],
                         options=recorded.get("options", {}))

    def target(self, service: ServiceSpec, row: Instance) -> SshTarget | LocalTarget:
        """Where `service`'s steps for the recorded instance `row` run."""
        return self.target_at(service, row.idx, row.address)

    def target_at(self, service: ServiceSpec, index: int,
                  address: str | None) -> SshTarget | LocalTarget:
        if service.local:
            return LocalTarget(root=self.run_dir / "local",
                               label=f"{service.name}-{index}")
        # The loader already gave services on another service's host that host's login.
        key = service.ssh_key if service.ssh_key else self.keypair()[0]
        return SshTarget(address=address, port=service.ssh_port_of(index),
                         user=service.ssh_user,
                         key_path=Path(key), known_hosts=self.known_hosts,
                         label=f"{service.name}-{index}", scope=self.remote_scope)

    @cached_property
    def remote_scope(self) -> str:
        """Short and stable for this run of this $CLOUDINITD_HOME: two homes may each
        have a run `web` on one shared host, and neither may touch the other's folder."""
        return hashlib.sha256(str(self.run_dir.resolve()).encode()).hexdigest()[:8]

    def extras(self, service: ServiceSpec) -> dict[str, Any] | None:
        """Context beyond vars and services: `home`, only for services whose templates use it.

        Data only: rendering (and deciding whether to re-configure, and hashing)
        never starts a process; the converge starts the share first (start_home_share).
        """
        if "home" not in self.uses.get(service.name, ()):
            return None
        return {"home": self.home_data()}

    @cached_property
    def uses(self) -> dict[str, set[str]]:
        return context_uses(self.plan)

    def home_data(self) -> dict[str, Any]:
        """The home share as templates see it: as started by this process, else as it was
        last started for the run (read from its folder), else dry-run stand-ins (a run
        whose share never started has configured no service that uses it)."""
        with self._lock:
            if self._home is not None:
                return self._home
        from cloudinitd.homeshare import recorded_home_share  # see start_home_share

        recorded = recorded_home_share(self.run_dir)
        if recorded is None:
            return placeholder_extra()["home"]
        return self._home_view(recorded)

    def _home_view(self, share: Any) -> dict[str, Any]:  # a homeshare.HomeShare
        view = asdict(share)
        if self.plan.vars.get("home_host"):
            view["host"] = str(self.plan.vars["home_host"])
        return view

    def start_home_share(self, service: ServiceSpec) -> dict[str, Any]:
        """Start (once per process) the run's sftp-only share of the user's home; see
        homeshare.py. The converge calls this before configuring a service that uses
        `home` (its cloud's bridge exists by then).

        It listens where the service's instances reach this machine (the local
        bridge), unless `vars.home_listen` says otherwise; `vars.home_host` is
        the address instances use when that differs (NAT, a public address).
        """
        # Imported here: only plans that use `home` need the share (and psutil, which
        # watches its process): -5 to 10 ms and ~1.5 MB for every other boot.
        from cloudinitd.homeshare import default_home_dir, ensure_home_share

        with self._lock:
            if self._home is None:
                v = self.plan.vars
                listen = v.get("home_listen") or self._home_address(service)
                if not listen:
                    raise PlanError(f"service {service.name!r} uses `home`, but its cloud has"
                                    " no address for this machine: set --var home_listen=ADDR"
                                    " (and --var home_host=ADDR if instances see it otherwise)")
                home_dir, user = default_home_dir()
                share = ensure_home_share(self.run_dir, str(listen),
                                          str(v.get("home_dir") or home_dir),
                                          str(v.get("home_user") or user),
                                          port=v.get("home_port") or None,
                                          read_only=str(v.get("home_read_only", "")).lower()
                                          in ("1", "true", "yes", "on"))
                self._home = self._home_view(share)
            return self._home

    def _home_address(self, service: ServiceSpec) -> str | None:
        while service.host in self.plan.services:
            service = self.plan.services[service.host]
        if not service.clouds:
            return None
        return self.provider(service.clouds[0].cloud).home_address()

    def desired_count(self, service: ServiceSpec) -> int:
        """The plan's count, unless `scale` changed it for this run."""
        counts = self.store.run(self.run).counts
        return int(counts.get(service.name, service.count))

    def world(self) -> dict[str, list[dict[str, Any]]]:
        """Every service's live instances as template attribute dicts (built-ins + exports)."""
        attrs = self.store.attributes(self.run)
        world: dict[str, list[dict[str, Any]]] = {name: [] for name in self.plan.services}
        for row in self.store.instances(self.run):
            if row.service not in world:
                continue
            # Exports first, built-ins over them: what dependents see of a machine
            # (where to connect, what it is) comes from its cloud, never from a script.
            item = dict(attrs.get((row.service, row.idx), {}))
            item |= {
                "address": row.address,
                "private_address": row.private_address or row.address,
                "hostname": row.hostname,
                "instance_id": row.instance_id,
                "cloud": row.cloud,
                "index": row.idx,
                "name": row.service,
            }
            world[row.service].append(item)
        for items in world.values():
            items.sort(key=lambda item: item["index"])
        return world


def open_run(home: Path, store: Store, run: str, plan_path: Path | None = None,
             overrides: dict[str, str] | None = None, progress: Progress = quiet) -> RunContext:
    """Load the plan a run was booted from (or a new one for `reload`) with its vars."""
    row = store.run(run)
    path = Path(plan_path or row.plan_path)
    if not path.exists():
        raise PlanError(f"run {run!r} was booted from {path}, which no longer exists;"
                        " use `cloudinitd reload PLAN --name RUN`")
    variables = dict(row.vars)  # the run's --var overrides, as given
    variables.update(overrides or {})
    plan = load_plan(path, overrides=variables, catalog=load_catalog(home))
    return RunContext(home=home, store=store, plan=plan, run=run, progress=progress)


def open_run_without_plan(home: Path, store: Store, run: str,
                          progress: Progress = quiet) -> RunContext:
    """For `terminate` when the plan is gone: no scripts, but every instance can still go."""
    row = store.run(run)
    plan = Plan(name=row.plan_name, path=Path(row.plan_path), vars={}, clouds={},
                services={})
    return RunContext(home=home, store=store, plan=plan, run=run, progress=progress)


def recorded_clouds(plan: Plan) -> dict[str, dict[str, Any]]:
    """What `create_run` keeps of the plan's clouds (references only, never secrets)."""
    used = {p.cloud for s in plan.services.values() for p in s.clouds}
    return {name: {"provider": spec.provider, "options": spec.options}
            for name, spec in plan.clouds.items() if name in used}

