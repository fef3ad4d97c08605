"""The `local` provider with real LXC containers on a private test bridge.

One module-scoped run of two instances (service `web`, ssh_user `admin`)
serves the read-only checks; tests that add or remove instances make their
own. Finalizers in tests/support/lxc.py destroy every container, lease,
bridge and apt proxy made here, also when a test fails.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import subprocess
from pathlib import Path

import pytest

from cloudinitd.errors import ProviderError
from cloudinitd.providers import hostnet
from cloudinitd.providers.base import RUNNING, TERMINATED
from cloudinitd.providers.local import boot, image
from cloudinitd.providers.local import lxc as lxc_cmd
from cloudinitd.providers.local.instance import SIDECAR, write_running_file
from tests.support.lxc import (
    destroy_all,
    isolated_net,
    loops_under,
    make_request,
    mounts_under,
    new_provider,
    ssh,
    wait_no_loops,
)

pytestmark = pytest.mark.lxc

RUN = "webrun"


@pytest.fixture(scope="module")
def web(local_provider, local_keypair):
    """Two running instances of service `web` in run RUN."""
    request = make_request(RUN, "web", 2, local_keypair, ssh_user="admin", size="small")
    seen = []
    infos = local_provider.launch(request, lambda index, info: seen.append((index, info)))
    assert [i for i, _ in seen] == [0, 1], "on_launched must be called once per index"
    ready = local_provider.wait_running([i.instance_id for i in infos], timeout=120)
    return request, ready


def _ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr.strip()}"
    return result.stdout


def test_check_summarises_prerequisites(local_provider):
    summary = local_provider.check()
    assert "LXC" in summary and hostnet.bridge_config().name in summary


def test_unknown_image_lists_known_images(local_provider, local_keypair):
    request = make_request("badimg", "x", 1, local_keypair, image="fedora-40")
    with pytest.raises(ProviderError, match="unknown local image 'fedora-40'.*debian-12"):
        local_provider.launch(request, lambda i, info: None)
    assert local_provider.find_run_instances("badimg") == []


def test_unknown_size_is_refused(local_provider, local_keypair):
    request = make_request("badsize", "x", 1, local_keypair, size="huge")
    with pytest.raises(ProviderError, match="unknown size 'huge'.*small"):
        local_provider.launch(request, lambda i, info: None)


def test_instances_run_with_addresses_on_our_bridge(web, local_net):
    _, infos = web
    network = hostnet.bridge_config().network
    assert [i.state for i in infos] == [RUNNING, RUNNING]
    assert [i.hostname for i in infos] == ["web-0", "web-1"]
    assert len({i.address for i in infos}) == 2
    assert all(ipaddress.IPv4Address(i.address) in network for i in infos)
    owners = hostnet.leases()
    for info in infos:
        assert owners[info.address].endswith("/" + info.instance_id)


def test_root_ssh_with_the_request_key(web, local_keypair):
    _, infos = web
    for info in infos:
        assert _ok(ssh(info.address, local_keypair.private, "id -un")).strip() == "root"


def test_ssh_user_created_with_passwordless_sudo(web, local_keypair):
    _, infos = web
    out = _ok(ssh(infos[1].address, local_keypair.private, "id -un; sudo -n id -un", user="admin"))
    assert out.split() == ["admin", "root"]


def test_hostname_and_hosts_list_the_run(web, local_keypair):
    _, infos = web
    for info in infos:
        out = _ok(
            ssh(
                info.address,
                local_keypair.private,
                "hostname; getent hosts web-0 web-1 cloudinitd-home",
            )
        )
        lines = out.splitlines()
        assert lines[0] == info.hostname
        resolved = {line.split()[1]: line.split()[0] for line in lines[1:]}
        assert resolved["web-0"] == infos[0].address
        assert resolved["web-1"] == infos[1].address
        assert resolved["cloudinitd-home"] == hostnet.bridge_config().gateway


def test_systemd_boots_like_a_vm(web, local_keypair):
    _, infos = web
    out = ssh(infos[0].address, local_keypair.private, "systemctl is-system-running --wait")
    assert out.stdout.strip() in ("running", "degraded"), out.stdout + out.stderr
    failed = _ok(
        ssh(infos[0].address, local_keypair.private, "systemctl --failed --no-legend --plain")
    )
    assert failed.strip() == "", f"failed units: {failed}"


def test_host_keys_differ_between_instances(web, local_keypair):
    _, infos = web
    keys = {
        _ok(ssh(i.address, local_keypair.private, "cat /etc/ssh/ssh_host_ed25519_key.pub")).split()[
            1
        ]
        for i in infos
    }
    assert len(keys) == 2


def test_apt_get_install_through_the_proxy(web, local_keypair):
    _, infos = web
    command = (
        "apt-get update -q >/dev/null && "
        "DEBIAN_FRONTEND=noninteractive apt-get install -y -q hello >/dev/null && hello"
    )
    out = _ok(ssh(infos[0].address, local_keypair.private, command, timeout=600))
    assert out.strip() == "Hello, world!"


def test_fuse_works_inside_sshfs_between_instances(web, local_keypair):
    """Instance 0 mounts instance 1's /etc over sshfs: FUSE really works in a container."""
    _, infos = web
    key = local_keypair.private
    dest = f"root@{infos[0].address}:/root/peer_key"
    subprocess.run(
        [
            "scp",
            "-q",
            "-i",
            str(key),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            str(key),
            dest,
        ],
        check=True,
    )
    script = (
        "test -c /dev/fuse && chmod 600 /root/peer_key && mkdir -p /mnt/peer && "
        "sshfs -o IdentityFile=/root/peer_key,StrictHostKeyChecking=no root@web-1:/etc /mnt/peer"
        " && cat /mnt/peer/hostname; rc=$?; fusermount3 -u /mnt/peer; exit $rc"
    )
    assert _ok(ssh(infos[0].address, key, script)).strip() == "web-1"


def test_size_maps_to_memory_limit(web, local_keypair):
    _, infos = web
    assert infos[0].extra.get("size") == "small"
    assert "limits" not in infos[0].extra, infos[0].extra.get("limits")
    out = _ok(
        ssh(
            infos[0].address,
            local_keypair.private,
            "cat /sys/fs/cgroup/memory.max 2>/dev/null || "
            "cat /sys/fs/cgroup/memory/memory.limit_in_bytes",
        )
    )
    assert int(out.strip()) == 512 << 20


def test_same_client_token_creates_nothing_new(web, local_provider):
    request, infos = web
    before = sorted(p.name for p in local_provider.lxcpath.iterdir() if p.is_dir())
    seen = []
    again = local_provider.launch(request, lambda index, info: seen.append(info.instance_id))
    after = sorted(p.name for p in local_provider.lxcpath.iterdir() if p.is_dir())
    assert [i.instance_id for i in again] == [i.instance_id for i in infos]
    assert seen == [i.instance_id for i in infos]
    assert after == before


def test_find_run_instances_without_the_store(web, local_provider, local_net):
    _, infos = web
    # A fresh provider object (as after a crash) finds them from the sidecars alone.
    fresh = new_provider(local_provider.home)
    found = sorted(fresh.find_run_instances(RUN), key=lambda i: i.index)
    assert [(i.instance_id, i.service, i.index, i.state) for i in found] == [
        (infos[0].instance_id, "web", 0, RUNNING),
        (infos[1].instance_id, "web", 1, RUNNING),
    ]
    assert fresh.find_run_instances("no-such-run") == []
    described = fresh.describe([infos[0].instance_id, "cid-00000000"])
    assert described[0].state == RUNNING and described[1].state == TERMINATED


def test_hosts_follow_instances_added_and_removed(web, local_provider, local_keypair):
    _, infos = web
    request = make_request(RUN, "db", 1, local_keypair)
    db = local_provider.launch(request, lambda i, info: None)
    db = local_provider.wait_running([db[0].instance_id], timeout=120)[0]
    try:
        hosts = _ok(ssh(infos[0].address, local_keypair.private, "cat /etc/hosts"))
        assert f"{db.address}\tdb-0" in hosts
        own = _ok(ssh(db.address, local_keypair.private, "getent hosts web-1"))
        assert own.split()[0] == infos[1].address
    finally:
        local_provider.terminate([db.instance_id])
    hosts = _ok(ssh(infos[0].address, local_keypair.private, "cat /etc/hosts"))
    assert "db-0" not in hosts and "web-1" in hosts
    assert db.address not in hostnet.leases()


def test_home_address_is_the_gateway_and_reachable(web, local_provider, local_keypair, local_net):
    _, infos = web
    gateway = local_provider.home_address()
    # Checked against this test's own subnet and the address the bridge device
    # really carries, not against the formula home_address() itself uses.
    assert gateway == str(ipaddress.IPv4Network(local_net.subnet).network_address + 1)
    on_bridge = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", local_net.bridge],
                               capture_output=True, text=True, check=True).stdout
    assert f" {gateway}/" in on_bridge
    # the apt proxy listens there: prove the instance reaches the machine
    out = _ok(
        ssh(
            infos[0].address,
            local_keypair.private,
            f"curl -s -o /dev/null -w '%{{http_code}}' http://{gateway}:3142/acng-report.html",
        )
    )
    assert out.strip() in ("200", "403", "404")


def test_terminate_leaves_nothing_behind(tmp_path, local_keypair, lxc_ready):
    """A run on its own bridge: after terminate + release, no container, lease, bridge or proxy."""
    with isolated_net(tmp_path) as net:
        provider = new_provider(tmp_path / "home")
        try:
            request = make_request("gone", "solo", 2, local_keypair)
            infos = provider.launch(request, lambda i, info: None)
            infos = provider.wait_running([i.instance_id for i in infos], timeout=120)
            proxy_pid = hostnet.apt_proxy_pid()
            assert proxy_pid and Path("/sys/class/net", net.bridge).exists()
            names = [i.instance_id for i in infos]
            assert len(loops_under(provider.lxcpath)) == 2  # one disk each

            provider.terminate(names)
            provider.release("gone")

            assert provider.find_run_instances("gone") == []
            assert [i.state for i in provider.describe(names)] == [TERMINATED, TERMINATED]
            for name in names:
                assert not (provider.lxcpath / name).exists()
                assert lxc_cmd.state(name, provider.lxcpath) is None
            listed = subprocess.run(
                ["lxc-ls", "-P", str(provider.lxcpath)], capture_output=True, text=True
            ).stdout.split()
            assert listed == []
            assert hostnet.leases() == {}
            assert mounts_under(provider.lxcpath) == []  # overlays, then the disks below
            assert wait_no_loops(provider.lxcpath) == []
            assert not Path("/sys/class/net", net.bridge).exists()
            cmdline = Path(f"/proc/{proxy_pid}/cmdline")
            assert not cmdline.exists() or b"apt-cacher-ng" not in cmdline.read_bytes()
        finally:
            destroy_all(provider)


def test_cleanup_stale_removes_containers_of_dead_runs(tmp_path, local_keypair, lxc_ready):
    with isolated_net(tmp_path) as net:
        provider = new_provider(tmp_path / "home")
        try:
            live = provider.launch(make_request("alive", "a", 1, local_keypair), lambda i, x: None)
            dead = provider.launch(make_request("ghost", "g", 1, local_keypair), lambda i, x: None)
            # a half-made container directory (crash between mkdir and sidecar)
            (provider.lxcpath / "cid-deadbeef").mkdir()
            removed = provider.cleanup_stale(live_runs={"alive"})
            assert sorted(removed) == sorted([dead[0].instance_id, "cid-deadbeef"])
            assert [i.instance_id for i in provider.find_run_instances("alive")] == [
                live[0].instance_id
            ]
            assert provider.find_run_instances("ghost") == []
            assert set(hostnet.leases()) == {live[0].address}
            assert Path("/sys/class/net", net.bridge).exists(), "alive run still uses the bridge"
            provider.cleanup_stale(live_runs=set())
            assert hostnet.leases() == {}
            assert mounts_under(provider.lxcpath) == [] and wait_no_loops(provider.lxcpath) == []
            assert not Path("/sys/class/net", net.bridge).exists()
        finally:
            destroy_all(provider)


def test_sidecar_holds_tags_and_no_secret(web, local_provider, local_keypair):
    request, infos = web
    text = (local_provider.lxcpath / infos[1].instance_id / SIDECAR).read_text()
    meta = json.loads(text)
    assert meta["run"] == RUN and meta["service"] == "web" and meta["index"] == 1
    assert meta["client_token"] == request.client_token
    assert meta["tags"] == {**request.tags, "index": "1"}
    private = local_keypair.private.read_text().splitlines()[1]
    assert private not in text


def test_base_image_cached_and_clean(local_net):
    """The base is reused, not rebuilt; it carries no host secrets or host DNS."""
    spec = image.image_spec("debian-12")
    messages: list[str] = []
    root = image.ensure_image("debian-12", messages.append)
    tarball = image.tarball_path(spec)
    stamp = tarball.stat().st_mtime_ns
    assert image.ensure_image("debian-12", messages.append) == root
    assert tarball.stat().st_mtime_ns == stamp
    assert not any("building" in m for m in messages), messages
    assert list((root / "etc/ssh").glob("ssh_host_*")) == [], "host keys must be per instance"
    assert "nameserver" not in (root / "etc/resolv.conf").read_text()
    assert (root / "etc/machine-id").read_text() == ""
    assert "inet manual" in (root / "etc/network/interfaces").read_text()
    for tool in ("usr/sbin/sshd", "usr/bin/python3", "usr/bin/sudo", "usr/bin/sshfs"):
        assert (root / tool).exists(), tool


def test_check_names_the_missing_package(local_provider, monkeypatch, tmp_path):
    """With lxc-* not on PATH, check() says which apt package to install."""
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no lxc-start
    with pytest.raises(ProviderError, match="apt-get install lxc"):
        local_provider.check()


# --- containers whose init exits during boot ------------------------------------

# A unit that does what systemd does when it cannot allocate its manager (root's
# inotify budget used up): say why on the console, then end PID 1, before sshd.
GIVE_UP_UNIT = """[Unit]
DefaultDependencies=no
Before=ssh.service cloudinitd-firstboot.service

[Service]
Type=oneshot
# Saying it until the end: other units starting meanwhile write to the console too.
ExecStart=/bin/sh -c 'systemctl poweroff -ff & while :; do echo "cid-test: init gives up" > /dev/console; done'

[Install]
WantedBy=multi-user.target
"""


def _lxc_stop_kill(provider, name: str) -> None:
    subprocess.run(
        ["lxc-stop", "-k", "-n", name, "-P", str(provider.lxcpath)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert lxc_cmd.state(name, provider.lxcpath) == "STOPPED"


def test_container_stopped_during_boot_is_restarted(local_net, tmp_path, local_keypair, caplog):
    provider = new_provider(tmp_path / "home")
    try:
        infos = provider.launch(make_request("phoenix", "p", 1, local_keypair), lambda i, x: None)
        name = infos[0].instance_id
        _lxc_stop_kill(provider, name)  # init gone right after lxc-start returned
        with caplog.at_level(logging.WARNING, logger="cloudinitd.local"):
            ready = provider.wait_running([name], timeout=120)
        assert ready[0].state == RUNNING
        assert ready[0].extra["boot_restarts"] == 1
        assert any(
            name in r.getMessage() and "restarting it (1 of 2)" in r.getMessage()
            for r in caplog.records
        ), "the restart must be logged"
        assert _ok(ssh(ready[0].address, local_keypair.private, "hostname")).strip() == "p-0"
    finally:
        destroy_all(provider)


def test_container_that_keeps_stopping_fails_with_its_console(local_net, tmp_path, local_keypair):
    provider = new_provider(tmp_path / "home")
    try:
        infos = provider.launch(make_request("doomed", "d", 1, local_keypair), lambda i, x: None)
        name = infos[0].instance_id
        provider.wait_running([name], timeout=120)
        unit = "/etc/systemd/system/cid-test-give-up.service"
        write_running_file(name, provider.lxcpath, unit, GIVE_UP_UNIT)
        wants = "/etc/systemd/system/multi-user.target.wants/cid-test-give-up.service"
        linked = lxc_cmd.attach(name, provider.lxcpath, ["ln", "-s", unit, wants])
        assert linked.returncode == 0, linked.stderr
        _lxc_stop_kill(provider, name)

        with pytest.raises(ProviderError) as err:
            provider.wait_running([name], timeout=180)
        message = str(err.value)
        assert name in message
        assert f"stopped during boot {boot.MAX_BOOT_RESTARTS + 1} times" in message
        assert "cid-test: init gives up" in message, "the console tail must be in the error"
        assert lxc_cmd.state(name, provider.lxcpath) == "STOPPED", "no restart after giving up"
        assert provider.describe([name])[0].extra["boot_restarts"] == boot.MAX_BOOT_RESTARTS
    finally:
        destroy_all(provider)

