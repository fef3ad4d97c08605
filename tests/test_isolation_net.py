"""Issue 17 item 3 (and the apt proxy of item 5): identity before trust, a bridge that
keeps instances to their own address, their own run and the ports granted to them.

The lxc tests act from inside real containers, as their root: they are what a
hostile boot script could do.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from cloudinitd.errors import RemoteError
from cloudinitd.providers import hostnet
from cloudinitd.providers.qemu.seed import SeedSpec, user_data
from cloudinitd.remote import SshTarget, close_all, wait_for_ssh
from cloudinitd.remote.hostkeys import generate_host_key, pin_host
from tests.support.cli import write_plan
from tests.support.lxc import (
    SSH_OPTS,
    destroy_all,
    isolated_net,
    make_request,
    new_provider,
    ssh,
)

# --- pinning, without containers ------------------------------------------------


@pytest.fixture(autouse=True)
def _close_sessions():
    yield
    close_all()


def _target(host, known_hosts: Path) -> SshTarget:
    return SshTarget(address=host.address, port=host.port, user=host.user,
                     key_path=host.key_path, known_hosts=known_hosts, label="svc-0")


def test_a_host_showing_another_key_than_the_pinned_one_is_refused(sshd_hosts, tmp_path):
    (host,) = sshd_hosts(1)
    known = tmp_path / "known_hosts"
    _, made_here = generate_host_key()  # what we put in the instance
    pin_host(known, host.address, host.port, made_here)
    # Whoever answers at that address now (here: a host with its own key) is refused,
    # on the very first connection: no trust on first use.
    with pytest.raises(RemoteError, match="changed"):
        wait_for_ssh(_target(host, known), timeout=10, service="svc")
    assert known.read_text().count("\n") == 1, "the impostor's key was not added"


def test_pinning_replaces_an_older_pin_of_the_address(sshd_hosts, tmp_path):
    (host,) = sshd_hosts(1)
    known = tmp_path / "known_hosts"
    pin_host(known, host.address, host.port, generate_host_key()[1])  # an earlier instance
    pin_host(known, "10.9.9.9", 22, generate_host_key()[1])  # someone else's pin stays
    pin_host(known, host.address, host.port, host.host_public_key)
    wait_for_ssh(_target(host, known), timeout=10, service="svc")
    lines = known.read_text().splitlines()
    assert len(lines) == 2 and any(ln.startswith("10.9.9.9 ") for ln in lines)


def test_qemu_seed_hands_over_the_host_key():
    private, public = generate_host_key()
    spec = SeedSpec(instance_id="qemu-x", hostname="h", ssh_user="root",
                    ssh_public_key="ssh-ed25519 AAAA k", address="10.1.2.3",
                    network=ipaddress.IPv4Network("10.1.2.0/24"), gateway="10.1.2.1",
                    mac="52:54:0a:01:02:03", host_key=(private, public))
    cfg = yaml.safe_load(user_data(spec))
    assert cfg["ssh_keys"] == {"ed25519_private": private, "ed25519_public": public}
    assert cfg["ssh_genkeytypes"] == [] and cfg["ssh_deletekeys"] is True


# --- from inside containers -----------------------------------------------------------

PROBE = """
import socket, sys
s = socket.socket(); s.settimeout(3)
if len(sys.argv) > 3: s.bind((sys.argv[3], 0))
try:
    s.connect((sys.argv[1], int(sys.argv[2]))); print("open")
except ConnectionRefusedError: print("refused")
except OSError: print("blocked")
"""


def probe(inst, key: Path, address: str, port: int, source: str = "") -> str:
    """From inside `inst`: "open", "refused" (reachable, nothing listens) or "blocked"."""
    cmd = f"python3 -c '{PROBE}' {address} {port} {source}"
    out = ssh(inst.address, key, cmd)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def root_ssh(inst, key: Path, command: str) -> str:
    out = ssh(inst.address, key, command)
    assert out.returncode == 0, f"{command}: {out.stderr}"
    return out.stdout


@pytest.fixture(scope="module")
def runs(local_provider, local_keypair) -> dict[str, list]:
    """Run a: two containers; run b: one container; all running."""
    out = {}
    for run, count in (("a", 2), ("b", 1)):
        infos = local_provider.launch(make_request(run, "svc", count, local_keypair),
                                      lambda i, info: None)
        out[run] = local_provider.wait_running([i.instance_id for i in infos], timeout=120)
    return out


def run_key(provider, run: str) -> str:
    return hostnet.run_key(Path(provider.home) / "runs" / run)


@pytest.mark.lxc
def test_instance_shows_the_host_key_made_for_it(runs, local_keypair, tmp_path):
    inst = runs["a"][0]
    assert inst.host_key and inst.host_key.startswith("ssh-ed25519 ")
    known = tmp_path / "known_hosts"
    known.write_text(f"{inst.address} {inst.host_key}\n")
    strict = [o.replace("StrictHostKeyChecking=no", "StrictHostKeyChecking=yes")
              .replace("UserKnownHostsFile=/dev/null", f"UserKnownHostsFile={known}")
              for o in SSH_OPTS]
    out = subprocess.run(["ssh", "-i", str(local_keypair.private), *strict,
                          f"root@{inst.address}", "cat /etc/ssh/ssh_host_*_key.pub"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[:2] == inst.host_key.split()[:2]
    assert len(out.stdout.strip().splitlines()) == 1, "no other host key in the instance"


@pytest.mark.lxc
def test_runs_cannot_reach_each_other(runs, local_keypair):
    a0, a1 = runs["a"]
    (b0,) = runs["b"]
    key = local_keypair.private
    assert probe(a0, key, a1.address, 22) == "open"  # same run: fine
    assert probe(a0, key, b0.address, 22) == "blocked"
    assert probe(b0, key, a0.address, 22) == "blocked"
    ping = ssh(b0.address, key, f"ping -c 2 -W 1 {a1.address}")
    assert ping.returncode != 0


@contextlib.contextmanager
def listener(address: str) -> Iterator[int]:
    """A TCP service of this machine on `address`, as the home share or anything else."""
    with socket.socket() as s:
        s.bind((address, 0))
        s.listen(8)
        yield s.getsockname()[1]


@pytest.mark.lxc
def test_gateway_admits_the_apt_proxy_and_granted_ports_only(runs, local_provider,
                                                            local_keypair):
    a0 = runs["a"][0]
    (b0,) = runs["b"]
    key = local_keypair.private
    gateway = hostnet.bridge_config().gateway
    assert probe(a0, key, gateway, hostnet.APT_PROXY_PORT) == "open"
    with listener("0.0.0.0") as port:
        assert probe(a0, key, gateway, port) == "blocked"
        hostnet.allow_gateway_port(run_key(local_provider, "a"), port)
        try:
            assert probe(a0, key, gateway, port) == "open"
            assert probe(b0, key, gateway, port) == "blocked", "granted to run a only"
        finally:
            hostnet.revoke_gateway_port(run_key(local_provider, "a"), port)
        assert probe(a0, key, gateway, port) == "blocked"


@pytest.mark.lxc
def test_apt_proxy_maintenance_page_is_refused_from_an_instance(runs, local_keypair):
    gateway = hostnet.bridge_config().gateway
    base = f"http://{gateway}:{hostnet.APT_PROXY_PORT}"
    for url in (f"{base}/acng-report.html", f"{base}/acng-report.html?doExpire=Start"):
        code = root_ssh(runs["a"][0], local_keypair.private,
                        f"curl -s -o /dev/null -w '%{{http_code}}' '{url}'")
        assert code.strip() not in ("200", "000"), f"{url} answered {code}"


@pytest.mark.lxc
def test_another_address_or_mac_goes_nowhere(runs, local_keypair):
    """Run b's root takes run a's second address, then a MAC of its own choosing."""
    a0, a1 = runs["a"]
    (b0,) = runs["b"]
    key = local_keypair.private
    gateway = hostnet.bridge_config().gateway
    root_ssh(b0, key, f"ip addr add {a1.address}/32 dev eth0")
    try:
        assert probe(b0, key, a0.address, 22, source=a1.address) == "blocked"
        assert probe(b0, key, gateway, hostnet.APT_PROXY_PORT, source=a1.address) == "blocked"
        assert probe(a0, key, a1.address, 22) == "open", "a1 still reachable for its run"
    finally:
        root_ssh(b0, key, f"ip addr del {a1.address}/32 dev eth0")
    # A changed MAC (own address): nothing leaves the port, not even to the proxy.
    # The command runs detached, as the change also cuts our SSH session.
    root_ssh(b0, key, f"cat > /root/probe.py <<'EOF'\n{PROBE}\nEOF")
    root_ssh(b0, key, "mac=$(cat /sys/class/net/eth0/address); "
             "nohup sh -c \"ip link set eth0 address 00:16:3e:de:ad:01; "
             f"python3 /root/probe.py {gateway} {hostnet.APT_PROXY_PORT} > /root/probe.out; "
             "ip link set eth0 address $mac\" >/dev/null 2>&1 &")
    assert _poll(lambda: ssh(b0.address, key, "cat /root/probe.out").stdout.strip()) == "blocked"


@pytest.mark.lxc
def test_rules_of_one_bridge_leave_another_bridge_alone(runs, local_keypair, tmp_path):
    """Bridge hooks see every bridge: a second bridge's instances must still work."""
    with isolated_net(tmp_path) as net:
        provider = new_provider(tmp_path / "home")
        try:
            infos = provider.launch(make_request("c", "svc", 1, local_keypair),
                                    lambda i, info: None)
            (inst,) = provider.wait_running([i.instance_id for i in infos], timeout=120)
            assert ipaddress.IPv4Address(inst.address) in ipaddress.IPv4Network(net.subnet)
            assert root_ssh(inst, local_keypair.private, "echo up").strip() == "up"
        finally:
            destroy_all(provider)


def _poll(fn, tries: int = 60):
    import time

    for _ in range(tries):
        with contextlib.suppress(Exception):
            value = fn()
            if value:
                return value
        time.sleep(0.5)
    return fn()


# --- an impostor at the next address, through the engine -------------------------------



GARP = """
import socket, struct, sys, time
ip = socket.inet_aton(sys.argv[1])
mac = bytes.fromhex(open("/sys/class/net/eth0/address").read().strip().replace(":", ""))
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 2) + mac + ip + b"\\xff" * 6 + ip
while True:
    s.send(b"\\xff" * 6 + mac + b"\\x08\\x06" + arp)
    time.sleep(0.2)
"""


def _next_lease(net_dir: Path) -> str:
    """The address the next launch will get (leases go round-robin: predictable)."""
    table = json.loads((net_dir / "leases.json").read_text())
    bridge = hostnet.bridge_config()
    hosts = [str(h) for h in bridge.network.hosts() if str(h) != bridge.gateway]
    for i in range(len(hosts)):
        candidate = hosts[(table["next"] + i) % len(hosts)]
        if candidate not in table["leases"]:
            return candidate
    raise AssertionError("no free address")


@pytest.mark.lxc
@pytest.mark.slow
def test_an_impostor_at_the_next_address_gets_no_boot_script(local_cli, tmp_path):
    idle = write_plan(tmp_path / "evil", """
        name: evil
        services:
          evil: {cloud: local, boot: idle.sh}
        """, {"idle.sh": "true\n"})
    local_cli("boot", idle, "--name", "evil")
    evil = local_cli("status", "evil", "--json").json()["services"]["evil"]["instances"][0]
    key = local_cli.home / "runs" / "evil" / "id_ed25519"
    stolen = _next_lease(local_cli.net.net_dir)
    # The impostor (root in its container) answers at the next address before the boot.
    out = ssh(evil["address"], key, f"ip addr add {stolen}/24 dev eth0")
    assert out.returncode == 0, out.stderr
    # ...and keeps telling the bridge so (gratuitous ARP), to win any race with the real one.
    out = ssh(evil["address"], key, f"cat > /root/garp.py <<'EOF'\n{GARP}\nEOF\n"
              f"nohup python3 /root/garp.py {stolen} >/dev/null 2>&1 &")
    assert out.returncode == 0, out.stderr

    victim = write_plan(tmp_path / "victim", """
        name: victim
        services:
          victim: {cloud: local, boot: secret.sh}
        """, {"secret.sh": "echo s3cret-marker-17 > /root/secret\n"})
    local_cli("boot", victim, "--name", "victim")
    real = local_cli("status", "victim", "--json").json()["services"]["victim"]["instances"][0]
    assert real["address"] == stolen, "the takeover aimed at the address the victim got"
    real_key = local_cli.home / "runs" / "victim" / "id_ed25519"
    assert ssh(stolen, real_key, "cat /root/secret").stdout.strip() == "s3cret-marker-17"
    leaked = ssh(evil["address"], key, "grep -rl s3cret-marker-17 /root /tmp /var/tmp || true")
    assert leaked.returncode == 0 and leaked.stdout.strip() == "", "the impostor got the script"
    local_cli("terminate", "victim")
    local_cli("terminate", "evil")


# --- qemu: the same identity, through the NoCloud seed ----------------------------------


@pytest.mark.qemu
@pytest.mark.slow
def test_qemu_vm_shows_the_host_key_made_for_it(qemu_provider, tmp_path):
    import secrets
    import time

    from cloudinitd.providers.base import LaunchRequest
    from tests.support.lxc import make_keypair

    key = make_keypair(tmp_path / "keys")
    run = f"qk{secrets.token_hex(3)}"
    request = LaunchRequest(run=run, plan="p", service="vm", cloud="qemu", indexes=[0],
                            client_token=secrets.token_hex(8), tags={"run": run},
                            ssh_user="root", ssh_public_key=key.public, hostnames=["qk-0"],
                            image="debian-12", size="small")
    (info,) = qemu_provider.launch(request, lambda i, inf: None)
    try:
        assert info.host_key and info.host_key.startswith("ssh-ed25519 ")
        (info,) = qemu_provider.wait_running([info.instance_id], timeout=400)
        known = tmp_path / "known_hosts"
        known.write_text(f"{info.address} {info.host_key}\n")
        cmd = ["ssh", "-i", str(key.private), "-o", "StrictHostKeyChecking=yes",
               "-o", f"UserKnownHostsFile={known}", "-o", "BatchMode=yes",
               "-o", "ConnectTimeout=10", f"root@{info.address}",
               "cat /etc/ssh/ssh_host_*_key.pub"]
        out = None
        for _ in range(20):  # sshd may answer before cloud-init wrote root's key
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
            if out.returncode == 0 or "IDENTIFICATION HAS CHANGED" in out.stderr:
                break
            time.sleep(3)
        assert out.returncode == 0, out.stderr
        assert out.stdout.split()[:2] == info.host_key.split()[:2]
        assert len(out.stdout.strip().splitlines()) == 1, "cloud-init made no other host key"
    finally:
        qemu_provider.terminate([info.instance_id])
