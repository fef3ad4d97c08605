"""The `local` provider: LXC system containers that boot systemd like cloud VMs.

Each instance is an unprivileged LXC container (user namespace) under `$CLOUDINITD_HOME/local/containers`
(cloud option `lxcpath` overrides), with an overlay rootfs on a cached Debian
base image, its writes on its own size-capped disk (cloud option `disk`,
disk.py), a static address leased from `hostnet` on the project's bridge,
apt through the bridge's apt proxy, /dev/fuse, and a sidecar JSON holding its
tags (create.py makes one). Containers of one run share an /etc/hosts
listing all of them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Collection, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from cloudinitd.bytesize import disk_size, format_size
from cloudinitd.errors import ProviderError
from cloudinitd.host import locks, ports
from cloudinitd.host.waiting import wait_until
from cloudinitd.plan.model import CloudSpec
from cloudinitd.providers import hostnet, lease
from cloudinitd.providers.base import (
    ERROR,
    PENDING,
    RUNNING,
    STOPPING,
    TERMINATED,
    InstanceInfo,
    LaunchRequest,
    OnLaunched,
    Provider,
)
from cloudinitd.providers.local import boot, hostlimits, image, lxc
from cloudinitd.providers.local import instance as inst
from cloudinitd.providers.local.create import (
    LEASE_PREFIX,
    create,
    lease_owner,
    run_prefix,
    veth_name,
)
from cloudinitd.providers.local.hosts import refresh_hosts
from cloudinitd.providers.local.images import LocalImageHooks, lower_for

log = logging.getLogger("cloudinitd.local")

SSH_PORT = 22
_STATE_MAP = {"RUNNING": RUNNING, "STARTING": PENDING, "STOPPING": STOPPING, "ABORTING": STOPPING}


class LocalProvider(LocalImageHooks, Provider):
    kind = "local"

    def __init__(self, cloud: CloudSpec, home: Path):
        super().__init__(cloud, home)
        opt = cloud.options.get("lxcpath")
        self.lxcpath = Path(opt) if opt else Path(home) / "local" / "containers"
        try:  # checked when the entry was loaded; a record edited since is refused here
            self.disk_size = disk_size(cloud.options.get("disk"))
        except ValueError as exc:
            raise ProviderError(f"cloud {cloud.name!r}: disk: {exc}") from None

    # --- helpers ------------------------------------------------------------

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """Serialise changes to this lxcpath (container creation, /etc/hosts updates)."""
        self.lxcpath.mkdir(parents=True, exist_ok=True, mode=0o700)
        with locks.exclusive(self.lxcpath / ".lock"):
            yield

    def _owner(self, name: str) -> str:
        return lease_owner(self.lxcpath, name)

    def _info(self, name: str, meta: dict[str, Any], lxc_state: str | None) -> InstanceInfo:
        if lxc_state is None:
            state = TERMINATED
        elif lxc_state == "STOPPED":
            state = PENDING if not meta.get("started") else ERROR
        else:
            state = _STATE_MAP.get(lxc_state, ERROR)
        extra = {"container": name, "lxc_state": lxc_state or "GONE", "image": meta.get("image")}
        if meta.get("size"):
            extra["size"] = meta["size"]
        if meta.get("disk"):
            extra["disk"] = format_size(meta["disk"])
        if meta.get("limits_note"):
            extra["limits"] = meta["limits_note"]
        if meta.get("boot_restarts"):
            extra["boot_restarts"] = meta["boot_restarts"]
        return InstanceInfo.from_record(name, state, meta, extra)

    def _infos(self, names: Sequence[str]) -> list[InstanceInfo]:
        states = lxc.states(self.lxcpath)
        out = []
        for name in names:
            directory = self.lxcpath / name
            meta = inst.read_sidecar(directory)
            st = states.get(name, (None, None))[0]
            if st is None and (directory / "config").exists():
                st = "STOPPED"
            if meta is None or (st is None and directory.is_dir()):
                # A folder left by a crash before its config was complete: it
                # holds a lease and must stay findable until terminate removes it.
                if not directory.is_dir():
                    out.append(InstanceInfo(instance_id=name, state=TERMINATED))
                    continue
                info = self._info(name, meta or {}, "HALF-MADE")
                info.state = ERROR
                out.append(info)
                continue
            out.append(self._info(name, meta, st))
        return out

    # --- Provider interface -------------------------------------------------

    def check(self) -> str:
        if os.geteuid() != 0:
            raise ProviderError("the local provider needs root (LXC system containers, a bridge)")
        version = lxc.available()
        for tool, package in (
            ("debootstrap", "debootstrap"),
            ("apt-cacher-ng", "apt-cacher-ng"),
            ("nft", "nftables"),  # the bridge firewall (providers/firewall.py)
            ("mkfs.ext4", "e2fsprogs"),  # each instance's own disk (disk.py)
            ("losetup", "util-linux"),
        ):
            if not shutil.which(tool) and not Path("/usr/sbin", tool).exists():
                raise ProviderError(f"{tool} not found: apt-get install {package}")
        if not Path("/dev/fuse").exists():
            raise ProviderError("/dev/fuse is missing on this machine (FUSE is needed for sshfs)")
        bridge = hostnet.bridge_config()
        spec = image.image_spec(None)
        cached = "cached" if image.is_ready(spec) else "not built yet"
        return (
            f"LXC {version}; bridge {bridge.name} {bridge.network}; "
            f"image {spec.name} {cached} in {image.cache_dir()}"
        )

    def home_address(self) -> str | None:
        return hostnet.bridge_config().gateway

    def launch(self, request: LaunchRequest, on_launched: OnLaunched) -> list[InstanceInfo]:
        if request.size is not None and request.size not in inst.SIZES:
            raise ProviderError(
                f"unknown size {request.size!r} for the local provider "
                f"(known: {', '.join(inst.SIZES)})"
            )
        if request.image is not None and request.image not in image.IMAGES:
            self.check_image_name(request.image)  # before it names anything on disk
        self.check()
        # The same client token again (a retry, or `repair` resuming the launch of a
        # process that died): report what exists, redo what was half made, start
        # what was made but never started, create the rest.
        existing: dict[int, str] = {}
        for name, meta in inst.all_sidecars(self.lxcpath).items():
            if meta.get("client_token") != request.client_token or meta.get("run") != request.run:
                continue
            if (self.lxcpath / name / "config").exists() and meta.get("index") not in existing:
                existing[meta["index"]] = name
            else:
                self.terminate([name])
        todo = [i for i in request.indexes if i not in existing]
        unstarted = [
            n
            for n, i in zip(existing.values(), self._infos(list(existing.values())), strict=True)
            if i.state == PENDING and i.extra.get("lxc_state") == "STOPPED"
        ]
        if unstarted:
            with self._lock():
                failures = boot.start_all(self.lxcpath, unstarted)
            if failures:
                raise ProviderError("; ".join(failures))
        for index in request.indexes:
            if index in existing:
                self._keep_lease(request, existing[index])
                on_launched(index, self._infos([existing[index]])[0])
        if not todo:
            return self._infos([existing[i] for i in request.indexes])
        image_name, lower = lower_for(request.image, self.say)  # built-in or saved
        created: dict[int, str] = {}
        with self._lock():
            for index in todo:
                name = create(
                    self.lxcpath, self.home, request, index, image_name, lower, self.disk_size
                )
                created[index] = name
                self._keep_lease(request, name)
                on_launched(index, self._infos([name])[0])
            refresh_hosts(self.lxcpath, request.run)
            failures = boot.start_all(self.lxcpath, list(created.values()))
        if failures:
            raise ProviderError("; ".join(failures))
        names = [existing.get(i) or created[i] for i in request.indexes]
        return self._infos(names)

    def _lease_log(self, name: str) -> Path:
        """Beside the containers, not in one: what a keeper says outlives the container."""
        folder = Path(self.home) / "local" / "leases"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{name}.log"

    def _keep_lease(self, request: LaunchRequest, name: str) -> None:
        """With a lease end, a keeper on this machine terminates the container then
        (lease.py), also when no cloudinitd runs; its pid is kept in the sidecar."""
        directory = self.lxcpath / name
        meta = inst.read_sidecar(directory)
        if request.expires is None or meta is None or meta.get("lease_pid"):
            return
        meta["expires"] = request.expires
        meta["lease_pid"] = lease.start_keeper(
            self.kind, self.cloud.name, self.cloud.options, Path(self.home), name,
            request.expires, directory, self._lease_log(name))
        inst.write_sidecar(directory, meta)

    def wait_running(self, instance_ids: Sequence[str], timeout: float) -> list[InstanceInfo]:
        waiting = list(instance_ids)
        stops: dict[str, int] = {}
        never_started: set[str] = set()

        def all_reachable() -> bool:
            nonlocal waiting
            infos = {i.instance_id: i for i in self._infos(waiting)}
            still = []
            for name in waiting:
                info = infos[name]
                if info.state == PENDING and info.extra.get("lxc_state") == "STOPPED":
                    # Made but never started (the launching process died first).
                    if name not in never_started:
                        never_started.add(name)
                        with self._lock():
                            boot.start_one(self.lxcpath, name)
                    still.append(name)
                    continue
                if info.state == ERROR and info.extra.get("lxc_state") == "STOPPED":
                    # lxc-ls answers for many containers at once: ask lxc-info about this one.
                    current = lxc.state(name, self.lxcpath)
                    if current == "STOPPED":
                        boot.restart_stopped(self.lxcpath, name, stops, self.say)
                    if current in ("STOPPED", "STARTING", "RUNNING"):
                        still.append(name)
                        continue
                if info.state in (TERMINATED, ERROR):
                    tail = lxc.log_tail(name, self.lxcpath)
                    raise ProviderError(
                        f"local instance {name} is {info.extra.get('lxc_state', info.state)} "
                        f"while waiting for it to run" + (f": {tail}" if tail else "")
                    )
                # Only ever probe addresses on our own bridge.
                if not (
                    info.state == RUNNING
                    and info.address
                    and self._ours(info.address)
                    and ports.port_open(info.address, SSH_PORT)
                ):
                    still.append(name)
            waiting = still
            return not waiting

        if waiting and not wait_until(all_reachable, timeout, interval=0.1):
            # A boot that stalls before sshd says why on its console.
            tail = lxc.log_tail(waiting[0], self.lxcpath)
            raise ProviderError(
                f"local instances not reachable on ssh within {timeout:.0f} s: "
                + ", ".join(waiting)
                + (f"; {waiting[0]} {tail}" if tail else "")
                + hostlimits.exhaustion_hint(lxc.console_lines(waiting[0], self.lxcpath))
            )
        return self._infos(instance_ids)

    @staticmethod
    def _ours(address: str) -> bool:
        import ipaddress

        return ipaddress.IPv4Address(address) in hostnet.bridge_config().network

    def describe(self, instance_ids: Sequence[str]) -> list[InstanceInfo]:
        return self._infos(instance_ids)

    def terminate(self, instance_ids: Sequence[str], timeout: float = 600.0) -> None:
        runs = set()
        metas = {}
        for name in instance_ids:
            meta = inst.read_sidecar(self.lxcpath / name)
            metas[name] = meta
            if meta:
                runs.add(meta.get("run"))

        for name, meta in metas.items():
            lease.stop_keeper((meta or {}).get("lease_pid"), name)

        def destroy(name: str) -> str | None:
            try:
                lxc.destroy(name, self.lxcpath)
            except ProviderError as exc:
                return str(exc)
            return None

        with ThreadPoolExecutor(max_workers=min(8, len(instance_ids) or 1)) as pool:
            errors = [e for e in pool.map(destroy, list(instance_ids)) if e]
        gone = [n for n in instance_ids if not (self.lxcpath / n).exists()]
        hostnet.detach_ports([(metas[n] or {}).get("veth") or veth_name(n) for n in gone])
        owners = {self._owner(n) for n in gone}
        for address, owner in hostnet.leases().items():
            if owner in owners:
                hostnet.release_address(address)
        with self._lock():
            for run in runs:
                refresh_hosts(self.lxcpath, run)
        if errors:
            raise ProviderError("; ".join(errors))

    def find_run_instances(self, run: str) -> list[InstanceInfo]:
        names = {n for n, m in inst.all_sidecars(self.lxcpath).items() if m.get("run") == run}
        if self.lxcpath.is_dir():
            # Folders a crash left before their sidecar: their name carries the run.
            prefix = run_prefix(run)
            names |= {d.name for d in self.lxcpath.iterdir()
                      if d.is_dir() and d.name.startswith(prefix)}
        return [i for i in self._infos(sorted(names)) if i.state != TERMINATED]

    def release(self, run: str) -> None:
        # Leases a crash left behind after their folder was already removed.
        base = f"{LEASE_PREFIX}{self.lxcpath.resolve()}/"
        for address, owner in hostnet.leases().items():
            if owner.startswith(base + run_prefix(run)) and not Path(owner[len(LEASE_PREFIX):]).exists():
                hostnet.release_address(address)
        hostnet.teardown_if_unused()

    # --- housekeeping for `cloudinitd clean` --------------------------------

    def cleanup_stale(self, live_runs: Collection[str]) -> list[str]:
        """Destroy containers whose run is not in `live_runs`; drop orphan leases.

        Returns the names of the containers removed. Also removes half-made
        container directories (no sidecar) and then tears the bridge and the
        apt proxy down when nothing uses them any more.
        """
        removed = []
        if self.lxcpath.is_dir():
            sidecars = inst.all_sidecars(self.lxcpath)
            stale = [n for n, m in sidecars.items() if m.get("run") not in live_runs]
            stale += [
                d.name
                for d in self.lxcpath.iterdir()
                if d.is_dir() and d.name.startswith("cid-") and d.name not in sidecars
            ]
            if stale:
                self.terminate(stale)
                removed = stale
        cleanup_orphan_leases()
        hostnet.teardown_if_unused()
        return removed


def cleanup_orphan_leases() -> list[str]:
    """Release `lxc:` leases whose container directory no longer exists (any home)."""
    released = []
    for address, owner in hostnet.leases().items():
        if owner.startswith(LEASE_PREFIX):
            path = Path(owner[len(LEASE_PREFIX) :])
            if path.is_absolute() and not path.exists():
                hostnet.release_address(address)
                released.append(address)
    return released
