"""Making one local instance: its folder, sidecar, lease, disk, guest files and LXC config.

Container names carry their run (`run_prefix`), and the order of the steps
makes a crash at any point leave something `terminate` finds and removes.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import time
from pathlib import Path

from cloudinitd.errors import ProviderError
from cloudinitd.providers import hostnet
from cloudinitd.providers.base import LaunchRequest
from cloudinitd.providers.local import disk, lxc
from cloudinitd.providers.local import instance as inst
from cloudinitd.providers.local import userdata as first_boot
from cloudinitd.remote.hostkeys import generate_host_key

LEASE_PREFIX = "lxc:"


def run_prefix(run: str) -> str:
    """Container names of a run start with this, so a folder made just before a crash
    (no sidecar yet) still names its run: `terminate` finds it by name alone."""
    return f"cid-{hashlib.sha256(run.encode()).hexdigest()[:8]}-"


def new_name(lxcpath: Path, run: str) -> str:
    while True:
        name = run_prefix(run) + secrets.token_hex(4)
        if not (lxcpath / name).exists():
            return name


def veth_name(container: str) -> str:
    """The host side of the container's veth, unique per container name.

    Interface names stop at 15 characters and container names share their
    run's prefix (`cid-RUNHASH-...`), so a cut name would collide: a digest of
    the whole name is used instead.
    """
    return "vcid" + hashlib.sha256(container.encode()).hexdigest()[:11]


def lease_owner(lxcpath: Path, name: str) -> str:
    """Who holds a container's address lease: its folder's path, so that
    cleanup_orphan_leases can tell a lease whose folder is gone."""
    return f"{LEASE_PREFIX}{lxcpath.resolve() / name}"


def create(
    lxcpath: Path,
    home: Path,
    request: LaunchRequest,
    index: int,
    image_name: str,
    lower: Path,
    disk_size: int,
) -> str:
    """Make one container; a crash at any line leaves something `terminate` finds.

    Order: the folder (its name carries the run), the sidecar (run, token,
    index), the lease (owned by the folder's path), the disk (mounted in
    the folder: removing the folder unmounts it first, lxc.destroy), the
    guest files, and the LXC config last, atomically: a folder without a config is half
    made and is never started, only removed or redone.
    """
    name = new_name(lxcpath, request.run)
    directory = lxcpath / name
    pos = request.indexes.index(index)
    hostname = (
        request.hostnames[pos] if pos < len(request.hostnames) else f"{request.service}-{index}"
    )
    directory.mkdir(parents=True)
    # Identity made here: the firewall binds port, MAC and address; the
    # engine pins the host key before it first connects.
    veth = veth_name(name)
    mac = "00:16:3e:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(3))
    host_private, host_public = generate_host_key()
    meta = {
        "run": request.run,
        "plan": request.plan,
        "service": request.service,
        "cloud": request.cloud,
        "index": index,
        "client_token": request.client_token,
        "tags": {**request.tags, "index": str(index)},
        "hostname": hostname,
        "address": None,
        "image": image_name,
        "size": request.size,
        "disk": disk_size,
        "lower": str(lower),
        "ssh_user": request.ssh_user,
        "veth": veth,
        "mac": mac,
        "host_key": host_public,
        "started": False,
        "created": time.time(),
    }
    address = None
    try:
        inst.write_sidecar(directory, meta)
        # The folder exists before the lease: a concurrent teardown_if_unused
        # sees the lease, and cleanup_orphan_leases sees the folder.
        address = hostnet.lease_address(lease_owner(lxcpath, name))
        meta["address"] = address
        inst.write_sidecar(directory, meta)
        bridge = hostnet.ensure_bridge()
        proxy = hostnet.ensure_apt_proxy(bridge)
        # The instance's own capped filesystem, then its layers on it.
        upper = inst.make_upper(directory, disk.create(directory, disk_size))
        limits = inst.cgroup_limits(request.size)
        config = inst.lxc_config(
            name,
            hostname,
            lower,
            directory,
            bridge.name,
            address,
            bridge.network.prefixlen,
            bridge.gateway,
            limits,
        )
        # Later keys win in an LXC config: our MAC (the firewall's) and port name.
        config += f"lxc.net.0.hwaddr = {mac}\nlxc.net.0.veth.pair = {veth}\n"
        run_dir = Path(home) / "runs" / request.run
        hostnet.attach_port(
            veth, run=hostnet.run_key(run_dir), address=address, mac=mac,
            owner=lease_owner(lxcpath, name),
        )
        key = request.ssh_public_key.strip() + "\n"
        files: dict[str, tuple[str | bytes, int]] = {
            "/etc/hostname": (inst.uts_name(hostname) + "\n", 0o644),
            "/etc/apt/apt.conf.d/01cloudinitd-proxy": (
                f'Acquire::http::Proxy "{proxy}";\n',
                0o644,
            ),
            "/root/.ssh/authorized_keys": (key, 0o600),
            "/etc/cloudinitd/ssh_user": (request.ssh_user + "\n", 0o644),
            "/etc/cloudinitd/authorized_keys": (key, 0o644),
            # The image's sshd uses only this key (sshd_config.d/cloudinitd.conf)
            # and its first-boot unit makes one only when this file is missing.
            "/etc/ssh/ssh_host_ed25519_key": (host_private, 0o600),
            "/etc/ssh/ssh_host_ed25519_key.pub": (host_public + "\n", 0o644),
        }
        if request.options.get("user_data"):
            files.update(first_boot.guest_files(request.options["user_data"]))
        for rel, (text, mode) in files.items():
            inst.write_guest_file(upper, lower, rel, text, mode)
        tmp = directory / "config.tmp"
        tmp.write_text(config)
        tmp.replace(directory / "config")
    except BaseException:
        # Give back what we took (a crash instead leaves it to terminate);
        # destroy unmounts the disk before removing the folder.
        with contextlib.suppress(ProviderError, OSError):
            lxc.destroy(name, lxcpath)
        hostnet.detach_ports([veth])
        if address:
            hostnet.release_address(address)
        raise
    return name
