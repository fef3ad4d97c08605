"""hostnet: the project's bridge, machine-wide leases, the apt proxy (real kernel objects).

Each test works on a private bridge / subnet / lease directory (see
tests/support/lxc.py), never on a real cidbr0.
"""

from __future__ import annotations

import ipaddress
import json
import multiprocessing
import pwd
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from cloudinitd.errors import ProviderError
from cloudinitd.providers import aptproxy, firewall, hostnet
from tests.support.lxc import isolated_net, require_lxc


@pytest.fixture
def net(tmp_path):
    require_lxc()
    with isolated_net(tmp_path) as n:
        yield n


def _addresses(dev: str) -> list[str]:
    out = subprocess.run(
        ["ip", "-j", "-4", "addr", "show", "dev", dev], capture_output=True, text=True, check=True
    ).stdout
    return [f"{a['local']}/{a['prefixlen']}" for link in json.loads(out) for a in link["addr_info"]]


def _ip_forward() -> str:
    return Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()


@pytest.mark.lxc
def test_bridge_created_idempotent_and_torn_down(net):
    forward_before = _ip_forward()
    bridge = hostnet.ensure_bridge()
    assert bridge.name == net.bridge
    assert bridge.network == ipaddress.IPv4Network(net.subnet)
    assert bridge.gateway == str(bridge.network.network_address + 1)
    assert Path("/sys/class/net", net.bridge, "bridge").is_dir(), "not a bridge device"
    assert _addresses(net.bridge) == [f"{bridge.gateway}/24"]

    again = hostnet.ensure_bridge()  # idempotent: same bridge, address not doubled
    assert again == bridge
    assert _addresses(net.bridge) == [f"{bridge.gateway}/24"]
    assert _ip_forward() == forward_before

    assert hostnet.teardown_if_unused() is True
    assert not Path("/sys/class/net", net.bridge).exists()
    assert _ip_forward() == forward_before


@pytest.mark.lxc
def test_subnet_colliding_with_existing_route_is_refused(net, monkeypatch):
    routes = json.loads(
        subprocess.run(
            ["ip", "-j", "-4", "route"], capture_output=True, text=True, check=True
        ).stdout
    )
    taken = [r for r in routes if r.get("dst") not in (None, "default")]
    assert taken, "this test needs at least one non-default route on the machine"
    monkeypatch.setenv("CLOUDINITD_SUBNET", str(ipaddress.IPv4Network(taken[0]["dst"])))
    with pytest.raises(ProviderError, match=f"collides with .*{taken[0]['dev']}"):
        hostnet.ensure_bridge()
    assert not Path("/sys/class/net", net.bridge).exists()


def _lease_many(args: tuple[dict[str, str], str, int]) -> list[str]:
    env, owner, count = args
    import os

    os.environ.update(env)
    return [hostnet.lease_address(f"{owner}:{i}") for i in range(count)]


@pytest.mark.lxc
def test_leases_are_unique_across_processes(net):
    ctx = multiprocessing.get_context("spawn")  # fresh interpreters, real separate processes
    with ctx.Pool(4) as pool:
        results = pool.map(_lease_many, [(net.env(), f"proc{p}", 30) for p in range(4)])
    got = [a for chunk in results for a in chunk]
    assert len(got) == 120
    assert len(set(got)) == 120, "an address was leased twice"
    network = ipaddress.IPv4Network(net.subnet)
    gateway = str(network.network_address + 1)
    assert gateway not in got
    assert all(ipaddress.IPv4Address(a) in network for a in got)
    table = hostnet.leases()
    assert set(table) == set(got)
    assert table[results[2][5]] == "proc2:5"
    for address in got:
        hostnet.release_address(address)
    assert hostnet.leases() == {}


@pytest.mark.lxc
def test_leases_run_out_with_clear_error(net, monkeypatch):
    monkeypatch.setenv("CLOUDINITD_SUBNET", "10.177.99.0/29")  # 6 hosts - gateway = 5
    got = [hostnet.lease_address("x") for _ in range(5)]
    assert len(set(got)) == 5
    with pytest.raises(ProviderError, match="no free address"):
        hostnet.lease_address("x")
    hostnet.release_address(got[2])
    assert hostnet.lease_address("y") == got[2]


@pytest.mark.lxc
def test_released_address_is_not_reused_at_once(net):
    first = hostnet.lease_address("a")
    hostnet.release_address(first)
    assert hostnet.lease_address("b") != first


def _listeners(port: int) -> list[str]:
    out = subprocess.run(
        ["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    return [line.split()[3] for line in out.splitlines() if line.strip()]


@pytest.mark.lxc
def test_apt_proxy_on_gateway_only_and_stopped_at_teardown(net):
    bridge = hostnet.ensure_bridge()
    url = hostnet.ensure_apt_proxy(bridge)
    assert url == f"http://{bridge.gateway}:3142"
    pid = hostnet.apt_proxy_pid()
    assert pid and b"apt-cacher-ng" in Path(f"/proc/{pid}/cmdline").read_bytes()
    assert f"{bridge.gateway}:3142" in _listeners(3142)
    assert "0.0.0.0:3142" not in _listeners(3142)
    assert hostnet.ensure_apt_proxy(bridge) == url
    assert hostnet.apt_proxy_pid() == pid, "a second call must reuse the running proxy"
    backends = (aptproxy.conf_dir() / "backends_debian").read_text().strip()
    assert backends == hostnet.host_debian_mirror()

    # Fetch a real index through the proxy, as an instance's apt would.
    proxy = urllib.request.ProxyHandler({"http": url})
    opener = urllib.request.build_opener(proxy)
    with opener.open("http://deb.debian.org/debian/dists/bookworm/Release", timeout=120) as r:
        body = r.read(4096).decode()
    assert "Codename: bookworm" in body
    # ...but nothing else: the proxy is no way out for instances.
    with pytest.raises(urllib.error.HTTPError) as denied:
        opener.open("http://example.com/pool/main/x.deb", timeout=60)
    assert denied.value.code == 403

    # Its maintenance page is off: it could start expiry/deletion jobs for anyone.
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(f"{url}/acng-report.html?doCount=1", timeout=30)
    with pytest.raises(urllib.error.HTTPError):
        opener.open("http://deb.debian.org/acng-report.html", timeout=30)

    lease = hostnet.lease_address("keep")
    assert hostnet.teardown_if_unused() is False, "a lease is held: nothing may go"
    assert Path(f"/proc/{pid}").exists()
    hostnet.release_address(lease)
    assert hostnet.teardown_if_unused() is True
    assert (
        not Path(f"/proc/{pid}").exists()
        or b"apt-cacher-ng" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    )
    assert not Path("/sys/class/net", net.bridge).exists()


def _uids(pid: int) -> list[int]:
    status = Path(f"/proc/{pid}/status").read_text()
    line = next(ln for ln in status.splitlines() if ln.startswith("Uid:"))
    return [int(u) for u in line.split()[1:]]


def test_apt_proxy_runs_as_its_own_user(net):
    bridge = hostnet.ensure_bridge()
    hostnet.ensure_apt_proxy(bridge)
    pid = hostnet.apt_proxy_pid()
    user = pwd.getpwnam("apt-cacher-ng")
    assert set(_uids(pid)) == {user.pw_uid}, "real, effective, saved and fs uid all dropped"
    assert Path(aptproxy.apt_cache_dir()).stat().st_uid == user.pw_uid
    assert (aptproxy.conf_dir() / "acng.conf").stat().st_uid == 0, "its config stays root's"
    assert hostnet.teardown_if_unused() is True


def test_firewall_tables_follow_ports_and_go_at_teardown(net):
    bridge = hostnet.ensure_bridge()
    owner = "test:fw"
    address = hostnet.lease_address(owner)
    run = hostnet.run_key(net.net_dir / "run-a")
    hostnet.attach_port("vcid-fwtest", run=run, address=address, mac="00:16:3e:aa:bb:cc",
                        owner=owner)
    rules = firewall.ruleset(bridge.name)
    assert '"vcid-fwtest"' in rules and "00:16:3e:aa:bb:cc" in rules and address in rules
    hostnet.allow_gateway_port(run, 2299)
    assert f"{address} . 2299" in firewall.ruleset(bridge.name)
    hostnet.revoke_gateway_port(run, 2299)
    assert "2299" not in firewall.ruleset(bridge.name)
    # A lease gone without a detach (a crash): the next sweep drops its rules.
    hostnet.release_address(address)
    keep = hostnet.lease_address("keep")
    assert hostnet.teardown_if_unused() is False
    assert "vcid-fwtest" not in firewall.ruleset(bridge.name)
    hostnet.release_address(keep)
    assert hostnet.teardown_if_unused() is True
    assert firewall.ruleset(bridge.name) == ""


def test_host_mirror_is_a_debian_archive():
    mirror = hostnet.host_debian_mirror()
    assert mirror.startswith("http://") and mirror.endswith("/debian/")


def test_apt_cache_the_proxy_user_cannot_reach_is_a_clear_error(net, tmp_path, monkeypatch):
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    monkeypatch.setenv("CLOUDINITD_APT_CACHE", str(private / "cache"))
    bridge = hostnet.ensure_bridge()
    with pytest.raises(ProviderError, match="cannot enter"):
        hostnet.ensure_apt_proxy(bridge)
    assert hostnet.apt_proxy_pid() is None
    assert hostnet.teardown_if_unused() is True
