"""QemuProvider: full local VMs with their own kernel, on the project's bridge.

For plans that need kernel features a container cannot have here (NFS).
Each instance is a qcow2 overlay of a cached Debian image, a NoCloud seed
(hostname, keys, static address, apt proxy), a tap on our bridge and a
daemonized qemu whose pid file and sidecar sit in `$CLOUDINITD_HOME/qemu/<id>/`.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import time
from collections.abc import Collection, Sequence
from pathlib import Path

from cloudinitd.errors import ProviderError
from cloudinitd.host import ports
from cloudinitd.host.waiting import wait_until
from cloudinitd.plan.model import CloudSpec
from cloudinitd.providers import hostnet, lease
from cloudinitd.providers.base import (
    ERROR,
    PENDING,
    RUNNING,
    TERMINATED,
    InstanceInfo,
    LaunchRequest,
    OnLaunched,
    Provider,
)
from cloudinitd.providers.qemu import accel as accel_mod
from cloudinitd.providers.qemu import image as image_mod
from cloudinitd.providers.qemu import vm
from cloudinitd.providers.qemu.images import QemuImageHooks
from cloudinitd.providers.qemu.seed import SeedSpec, write_seed
from cloudinitd.remote.hostkeys import generate_host_key

# size -> (memory MiB, vCPUs). The machine has 2 cores: more vCPUs than that
# only adds contention under TCG.
SIZES = {"small": (1024, 1), "medium": (2048, 1), "large": (4096, 2)}
DEFAULT_IMAGE = "debian-12"


class QemuProvider(QemuImageHooks, Provider):
    kind = "qemu"
    flush_before_save = True  # the guest's page cache is not in its disk file

    def __init__(self, cloud: CloudSpec, home: Path):
        super().__init__(cloud, home)
        self.state_dir = home / "qemu"
        self.cache = image_mod.image_cache(home)

    # --- helpers -------------------------------------------------------------

    def _files(self, instance_id: str) -> vm.VmFiles:
        return vm.VmFiles(self.state_dir / instance_id)

    def _require_tools(self) -> None:
        missing = vm.missing_tools()
        if missing:
            raise ProviderError("qemu provider: missing " + ", ".join(missing))

    def _size(self, size: str | None) -> tuple[int, int]:
        sizes = {**SIZES, **self.cloud.options.get("sizes", {})}
        name = size or "small"
        if name not in sizes:
            raise ProviderError(
                f"qemu provider: unknown size {name!r} (known: {', '.join(sorted(sizes))})"
            )
        memory, cpus = sizes[name]
        return int(memory), int(cpus)

    def _info(self, files: vm.VmFiles) -> InstanceInfo:
        # Like a cloud's "running": the machine is up, not necessarily its sshd
        # (wait_running checks that; describe must stay cheap for `status`).
        data = files.read()
        if not data:
            return InstanceInfo(instance_id=files.dir.name, state=TERMINATED)
        if files.alive():
            state = RUNNING
        elif data.get("pid"):
            state = ERROR  # it was started and has died
        else:
            state = PENDING  # being launched by some process right now
        extra = {k: data[k] for k in ("accel", "memory_mb", "cpus", "tap", "pid", "run")
                 if k in data}
        return InstanceInfo.from_record(files.dir.name, state, data,
                                        extra | {"serial_log": str(files.serial)})

    # --- Provider interface --------------------------------------------------

    def check(self) -> str:
        self._require_tools()
        base = image_mod.base_image(self.cache, DEFAULT_IMAGE)
        built = "image cached" if base.exists() else "image not built yet"
        return f"qemu {shutil.which(vm.QEMU)}; {built} in {self.cache}"

    def launch(self, request: LaunchRequest, on_launched: OnLaunched) -> list[InstanceInfo]:
        self._require_tools()
        if len(request.hostnames) != len(request.indexes):
            raise ProviderError("qemu provider: one hostname per index is required")
        memory, cpus = self._size(request.size)
        base = self.resolve_image(request.image)  # built-in or saved (images.py)
        # The verdict is about this machine, not this home: cache it with the image.
        accel = accel_mod.choose_accel(
            base.kernel, base.disk.parent, self.cloud.options.get("accel")
        )
        infos = []
        for index, hostname in zip(request.indexes, request.hostnames, strict=True):
            info = self._launch_one(request, index, hostname, base, accel, memory, cpus)
            if request.expires is not None:
                # The lease holds with no controller running (providers/lease.py).
                files = self._files(info.instance_id)
                files.update(expires=request.expires, lease_pid=lease.start_keeper(
                    self.kind, self.cloud.name, self.cloud.options, Path(self.home),
                    info.instance_id, request.expires, files.dir, files.dir / "lease.log"))
            on_launched(index, info)
            infos.append(info)
        return infos

    def _launch_one(
        self,
        request: LaunchRequest,
        index: int,
        hostname: str,
        base: image_mod.BaseImage,
        accel: str,
        memory: int,
        cpus: int,
    ) -> InstanceInfo:
        instance_id = f"qemu-{secrets.token_hex(5)}"
        files = self._files(instance_id)
        files.dir.mkdir(parents=True, mode=0o700)
        tags = {
            **request.tags,
            "run": request.run,
            "service": request.service,
            "plan": request.plan,
            "index": str(index),
        }
        # Recorded before any resource exists: `clean` can always find what follows.
        files.write(
            {
                "instance_id": instance_id,
                "run": request.run,
                "service": request.service,
                "plan": request.plan,
                "index": index,
                "client_token": request.client_token,
                "tags": tags,
                "hostname": hostname,
                "cloud": request.cloud,
                "accel": accel,
                "memory_mb": memory,
                "cpus": cpus,
                "created": time.time(),
            }
        )
        address = hostnet.lease_address(f"qemu:{instance_id}")
        tap = vm.tap_name(instance_id)
        # Made here and handed over in the seed: the engine pins it before it connects.
        host_private, host_public = generate_host_key()
        files.update(address=address, tap=tap, host_key=host_public)
        try:
            bridge = hostnet.ensure_bridge()
            proxy = hostnet.ensure_apt_proxy(bridge)
            mac = vm.mac_for(address)
            seed = write_seed(
                SeedSpec(
                    instance_id=instance_id,
                    hostname=hostname,
                    ssh_user=request.ssh_user,
                    ssh_public_key=request.ssh_public_key,
                    address=address,
                    network=bridge.network,
                    gateway=bridge.gateway,
                    mac=mac,
                    apt_proxy=proxy,
                    host_key=(host_private, host_public),
                    user_data=request.options.get("user_data"),
                ),
                files.dir,
            )
            vm.create_overlay(base.disk, files.overlay)
            hostnet.attach_port(
                tap, run=hostnet.run_key(self.home / "runs" / request.run), address=address,
                mac=mac, owner=f"qemu:{instance_id}",
            )
            vm.create_tap(tap, bridge.name)
            cmd = vm.qemu_command(
                files,
                kernel=base.kernel,
                initrd=base.initrd,
                seed=seed,
                tap=tap,
                mac=mac,
                memory_mb=memory,
                cpus=cpus,
                accel=accel,
            )
            pid = vm.start(cmd, files)
            files.update(pid=pid, started=time.time())
        except BaseException:
            self._destroy(files)
            raise
        info = self._info(files)
        info.state = PENDING  # booting: wait_running says when its sshd answers
        return info

    def wait_running(self, instance_ids: Sequence[str], timeout: float) -> list[InstanceInfo]:
        pending = list(instance_ids)

        def all_answer() -> bool:
            for iid in list(pending):
                files = self._files(iid)
                data = files.read()
                if not data:
                    raise ProviderError(f"qemu instance {iid} does not exist")
                if not files.alive():
                    raise ProviderError(
                        f"qemu instance {iid} ({data.get('hostname')}) exited "
                        f"while booting; serial console:\n{files.serial_tail()}"
                    )
                if ports.ssh_answers(data["address"], 22, 1.0):
                    pending.remove(iid)
            return not pending

        if pending and not wait_until(all_answer, timeout, interval=1.0):
            tails = "\n".join(
                f"--- {iid} ({self._files(iid).serial}):\n{self._files(iid).serial_tail()}"
                for iid in pending
            )
            raise ProviderError(
                f"qemu instances not answering SSH after {timeout:.0f} s: "
                f"{', '.join(pending)}\n{tails}"
            )
        return self.describe(instance_ids)

    def describe(self, instance_ids: Sequence[str]) -> list[InstanceInfo]:
        return [self._info(self._files(iid)) for iid in instance_ids]

    def terminate(self, instance_ids: Sequence[str], timeout: float = 600.0) -> None:
        errors = []
        for iid in instance_ids:
            lease.stop_keeper(self._files(iid).read().get("lease_pid"), iid)
            try:
                self._destroy(self._files(iid), timeout)
            except ProviderError as exc:
                errors.append(str(exc))
        if errors:
            raise ProviderError("; ".join(errors))

    def _destroy(self, files: vm.VmFiles, timeout: float = 30.0) -> None:
        """Power off, then remove tap, overlay and lease; keep the console log."""
        data = files.read()
        vm.stop(files, min(timeout, 30.0))
        if data.get("tap"):
            vm.delete_tap(data["tap"])
            hostnet.detach_ports([data["tap"]])
        if files.serial.exists():
            logs = self.state_dir / "logs"
            logs.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(OSError):
                shutil.copy2(files.serial, logs / f"{files.dir.name}.serial.log")
        shutil.rmtree(files.dir, ignore_errors=True)
        if data.get("address"):
            owner = hostnet.leases().get(data["address"])
            if owner == f"qemu:{files.dir.name}":
                hostnet.release_address(data["address"])

    def find_run_instances(self, run: str) -> list[InstanceInfo]:
        return [
            info
            for info in (self._info(f) for f in self._all_files())
            if info.state != TERMINATED and info.extra.get("run") == run
        ]

    def _all_files(self) -> list[vm.VmFiles]:
        if not self.state_dir.is_dir():
            return []
        return [vm.VmFiles(d) for d in sorted(self.state_dir.glob("qemu-*")) if d.is_dir()]

    def release(self, run: str) -> None:
        hostnet.teardown_if_unused()

    def cleanup_stale(self, live_runs: Collection[str]) -> list[str]:
        """For `cloudinitd clean`: remove VMs whose run is not in `live_runs`,
        dead VMs, taps without a VM and leases without a VM; one line per removal."""
        from cloudinitd.providers.qemu.strays import clean_strays, find_strays

        live = set(live_runs)
        done = clean_strays(self.home, find_strays(self.home, lambda run: run in live))
        hostnet.teardown_if_unused()
        return done

    def home_address(self) -> str | None:
        return hostnet.bridge_config().gateway
