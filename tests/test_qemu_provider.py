"""The qemu provider against real QEMU VMs (plus its fast, VM-free checks)."""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import time
from pathlib import Path

import pytest
import yaml

from cloudinitd.errors import ProviderError
from cloudinitd.plan.model import CloudSpec
from cloudinitd.providers import hostnet
from cloudinitd.providers.base import RUNNING, TERMINATED, LaunchRequest
from cloudinitd.providers.qemu import QemuProvider
from cloudinitd.providers.qemu import vm as qemu_vm
from cloudinitd.providers.qemu.seed import SeedSpec, meta_data, network_config, user_data
from tests.support.lxc import make_keypair, ssh
from tests.support.qemu import leftovers


def _seed(ssh_user: str = "root") -> SeedSpec:
    return SeedSpec(
        instance_id="qemu-abc",
        hostname="compute-1",
        ssh_user=ssh_user,
        ssh_public_key="ssh-ed25519 AAAAC3Nza test",
        address="10.177.0.7",
        network=ipaddress.IPv4Network("10.177.0.0/24"),
        gateway="10.177.0.1",
        mac="52:54:0a:b1:00:07",
        apt_proxy="http://10.177.0.1:3142",
    )


def test_seed_user_data_authorises_root_and_the_ssh_user():
    text = user_data(_seed("debian"))
    assert text.startswith("#cloud-config\n")
    cfg = yaml.safe_load(text)
    assert cfg["hostname"] == "compute-1"
    assert cfg["disable_root"] is False
    assert cfg["ssh_authorized_keys"] == ["ssh-ed25519 AAAAC3Nza test"]
    (user,) = cfg["users"]
    assert user["name"] == "debian" and user["ssh_authorized_keys"] == cfg["ssh_authorized_keys"]
    (proxy,) = cfg["write_files"]
    assert proxy["content"] == 'Acquire::http::Proxy "http://10.177.0.1:3142";\n'
    assert proxy["path"].startswith("/etc/apt/apt.conf.d/")
    assert yaml.safe_load(user_data(_seed("root")))["users"] == []


def test_seed_network_is_static_on_the_leased_address():
    net = yaml.safe_load(network_config(_seed()))
    (iface,) = net["config"]
    assert iface["mac_address"] == "52:54:0a:b1:00:07"
    (subnet,) = iface["subnets"]
    assert subnet == {"type": "static", "address": "10.177.0.7/24", "gateway": "10.177.0.1"}
    assert json.loads(meta_data(_seed())) == {
        "instance-id": "qemu-abc",
        "local-hostname": "compute-1",
    }


def test_missing_tools_name_their_apt_package(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty PATH: nothing is installed
    provider = QemuProvider(CloudSpec(name="qemu", provider="qemu"), tmp_path)
    with pytest.raises(ProviderError) as err:
        provider.check()
    msg = str(err.value)
    assert "qemu-system-x86_64 (apt-get install qemu-system-x86)" in msg
    assert "cloud-localds (apt-get install cloud-image-utils)" in msg
    assert "qemu-img (apt-get install qemu-utils)" in msg
    assert "debootstrap (apt-get install debootstrap)" in msg


def test_unknown_size_is_a_clear_error(tmp_path):
    provider = QemuProvider(CloudSpec(name="qemu", provider="qemu"), tmp_path)
    with pytest.raises(ProviderError, match="unknown size 'huge'"):
        provider._size("huge")
    assert provider._size("large") == (4096, 2)


def test_describe_unknown_id_is_terminated(tmp_path):
    provider = QemuProvider(CloudSpec(name="qemu", provider="qemu"), tmp_path)
    (info,) = provider.describe(["qemu-0000000000"])
    assert info.state == TERMINATED
    assert provider.find_run_instances("nope") == []


@pytest.mark.qemu
@pytest.mark.slow
def test_vm_boots_with_own_kernel_keys_and_hostname_and_terminates_clean(
    qemu_provider: QemuProvider, tmp_path: Path
):
    key = make_keypair(tmp_path / "keys")
    run = f"qt{secrets.token_hex(3)}"
    request = LaunchRequest(
        run=run,
        plan="test-plan",
        service="vm",
        cloud="qemu",
        indexes=[0],
        client_token=secrets.token_hex(8),
        tags={"run": run, "service": "vm"},
        ssh_user="cid",
        ssh_public_key=key.public,
        hostnames=["qvm-0"],
        image="debian-12",
        size="small",
    )
    seen = []
    started = time.monotonic()
    (info,) = qemu_provider.launch(request, lambda i, inf: seen.append((i, inf.instance_id)))
    assert seen == [(0, info.instance_id)]
    files = qemu_provider._files(info.instance_id)
    tap = files.read()["tap"]
    assert Path("/sys/class/net", tap).exists()
    assert files.overlay.exists()

    (info,) = qemu_provider.wait_running([info.instance_id], timeout=400)
    boot_seconds = time.monotonic() - started
    print(f"\nboot to SSH: {boot_seconds:.1f} s, accel {info.extra['accel']}")
    assert info.state == RUNNING
    bridge = hostnet.bridge_config()
    assert ipaddress.IPv4Address(info.address) in bridge.network
    assert hostnet.leases()[info.address] == f"qemu:{info.instance_id}"
    assert info.extra["accel"] in ("kvm", "tcg")
    assert [i.instance_id for i in qemu_provider.find_run_instances(run)] == [info.instance_id]

    # Root and the plan's ssh_user both get the key, as on a cloud.
    probe = (
        "hostname; uname -r; modprobe nfsv4 && grep -cw nfs4 /proc/filesystems;"
        " modprobe nfsd && grep -cw nfsd /proc/filesystems"
    )
    out = None
    for _ in range(10):  # sshd answers before cloud-init finished writing every key
        out = ssh(info.address, key.private, probe)
        if out.returncode == 0:
            break
        time.sleep(3)
    assert out.returncode == 0, out.stderr
    hostname, kernel, nfs4, nfsd = out.stdout.split()
    assert hostname == "qvm-0"
    assert kernel != os.uname().release  # its own kernel, not the host's
    assert nfs4 == "1" and nfsd == "1"
    user = ssh(info.address, key.private, "id -un; sudo -n id -u", user="cid")
    assert user.returncode == 0, user.stderr
    assert user.stdout.split() == ["cid", "0"]

    qemu_provider.terminate([info.instance_id])
    (gone,) = qemu_provider.describe([info.instance_id])
    assert gone.state == TERMINATED
    assert leftovers(qemu_provider.home, [tap]) == []
    assert info.address not in hostnet.leases()
    assert not qemu_vm.pid_is_our_qemu(files.pid() or 0, files.dir)
