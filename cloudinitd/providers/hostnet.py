"""The project's own bridge, machine-wide address leases and the bridge firewall.

Shared by the `local` (LXC) and `qemu` providers. Everything here is
machine-wide state guarded by one fcntl lock in `$CLOUDINITD_NET_DIR`
(default /run/cloudinitd-net), so several cloudinitd processes (and both
providers) can lease addresses on the same bridge safely.

Network rules (see docs): a plain Linux bridge with the gateway address on
it, no NAT, IP forwarding never touched. Instances therefore reach only the
bridge: apt inside them goes through an apt-cacher-ng bound to the gateway
(`aptproxy`). Every instance port is registered here (`attach_port`) before
the instance starts, which binds its MAC and leased address to the port and
keeps runs apart (`firewall`).

Order callers should follow, so a concurrent `teardown_if_unused` never
removes the bridge under them: lease first, then `ensure_bridge`.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cloudinitd.errors import ProviderError
from cloudinitd.host import locks
from cloudinitd.providers import firewall
from cloudinitd.settings import settings

DEFAULT_BRIDGE = "cidbr0"
DEFAULT_SUBNET = "10.177.0.0/24"


@dataclass(frozen=True)
class Bridge:
    name: str
    gateway: str
    network: ipaddress.IPv4Network


def bridge_config() -> Bridge:
    """The bridge we would use, from the environment; creates nothing."""
    name = settings().bridge or DEFAULT_BRIDGE
    try:
        network = ipaddress.IPv4Network(settings().subnet or DEFAULT_SUBNET)
    except ValueError as exc:
        raise ProviderError(f"CLOUDINITD_SUBNET: {exc}") from None
    if network.num_addresses < 8:
        raise ProviderError(f"CLOUDINITD_SUBNET {network} is too small (need at least /29)")
    return Bridge(name=name, gateway=str(network.network_address + 1), network=network)


def net_dir() -> Path:
    return Path(settings().net_dir or "/run/cloudinitd-net")


@contextlib.contextmanager
def locked() -> Iterator[Path]:
    """Hold the machine-wide lock; yields the state directory."""
    d = net_dir()
    d.mkdir(parents=True, exist_ok=True, mode=0o755)
    with locks.exclusive(d / "lock"):
        yield d


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(["ip", *args], capture_output=True, text=True)
    except FileNotFoundError:
        raise ProviderError("`ip` not found: install the iproute2 package") from None
    if check and proc.returncode != 0:
        raise ProviderError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc


def _link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def _collisions(bridge: Bridge) -> list[str]:
    """Routes or addresses overlapping our subnet that are not on our bridge."""
    found = []
    routes = json.loads(_ip("-j", "-4", "route", "show", "table", "all").stdout or "[]")
    for r in routes:
        dst = r.get("dst", "")
        if dst in ("default", "") or r.get("dev") == bridge.name:
            continue
        if r.get("type") in ("broadcast", "local") and r.get("dev") == bridge.name:
            continue
        try:
            net = ipaddress.IPv4Network(dst, strict=False)
        except ValueError:
            continue
        if net.overlaps(bridge.network):
            found.append(f"route {dst} dev {r.get('dev')}")
    addrs = json.loads(_ip("-j", "-4", "addr", "show").stdout or "[]")
    for link in addrs:
        if link.get("ifname") == bridge.name:
            continue
        for a in link.get("addr_info", []):
            if ipaddress.IPv4Address(a["local"]) in bridge.network:
                found.append(f"address {a['local']} on {link.get('ifname')}")
    return found


def ensure_bridge() -> Bridge:
    """Create (or verify) our bridge with the gateway address. Idempotent; needs root."""
    bridge = bridge_config()
    if os.geteuid() != 0:
        raise ProviderError("creating the bridge needs root (run cloudinitd as root)")
    with locked() as d:
        clashes = _collisions(bridge)
        if clashes:
            raise ProviderError(
                f"subnet {bridge.network} collides with {'; '.join(clashes)}: "
                "set CLOUDINITD_SUBNET to a free private /24"
            )
        if not _link_exists(bridge.name):
            _ip("link", "add", bridge.name, "type", "bridge")
            (d / "bridge-created").write_text(bridge.name + "\n")
        prefix = f"{bridge.gateway}/{bridge.network.prefixlen}"
        have = _ip("-j", "-4", "addr", "show", "dev", bridge.name).stdout
        if f'"{bridge.gateway}"' not in have:
            _ip("addr", "add", prefix, "dev", bridge.name)
        _ip("link", "set", bridge.name, "up")
    return bridge


def bridge_exists() -> bool:
    return _link_exists(bridge_config().name)


# --- leases -----------------------------------------------------------------


def _read_table(d: Path) -> dict:
    try:
        table = json.loads((d / "leases.json").read_text())
    except (FileNotFoundError, ValueError):
        table = {}
    table.setdefault("leases", {})
    table.setdefault("next", 0)
    return table


def _write_table(d: Path, table: dict) -> None:
    tmp = d / "leases.json.tmp"
    tmp.write_text(json.dumps(table, indent=1, sort_keys=True))
    tmp.replace(d / "leases.json")


def lease_address(owner: str) -> str:
    """Lease a free address on the bridge subnet to `owner` (e.g. "lxc:NAME").

    Addresses are handed out round-robin so a just-released address (whose
    old host key may still be pinned somewhere) is reused as late as possible.
    """
    bridge = bridge_config()
    hosts = [str(h) for h in bridge.network.hosts() if str(h) != bridge.gateway]
    with locked() as d:
        table = _read_table(d)
        taken = table["leases"]
        start = table["next"] % len(hosts)
        for i in range(len(hosts)):
            candidate = hosts[(start + i) % len(hosts)]
            if candidate not in taken:
                taken[candidate] = owner
                table["next"] = (start + i + 1) % len(hosts)
                _write_table(d, table)
                return candidate
    raise ProviderError(f"no free address left on {bridge.network} ({len(hosts)} leased)")


def release_address(address: str) -> None:
    with locked() as d:
        table = _read_table(d)
        if table["leases"].pop(address, None) is not None:
            _write_table(d, table)


def leases() -> dict[str, str]:
    """address -> owner, for every current lease."""
    with locked() as d:
        return dict(_read_table(d)["leases"])


def teardown_if_unused() -> bool:
    """With no lease left: stop our apt proxy (by its pid), drop the rules, delete our bridge."""
    from cloudinitd.providers import aptproxy

    bridge = bridge_config()
    with locked() as d:
        if _read_table(d)["leases"]:
            _sweep_ports(d, bridge)
            return False
        aptproxy.stop_apt_proxy()
        if (d / firewall.STATE).exists() or _link_exists(bridge.name):
            firewall.nft(firewall.remove_text(bridge.name))
        with contextlib.suppress(FileNotFoundError):
            (d / firewall.STATE).unlink()
        marker = d / "bridge-created"
        created = marker.exists() and marker.read_text().strip() == bridge.name
        if created and _link_exists(bridge.name):
            _ip("link", "del", bridge.name)
        with contextlib.suppress(FileNotFoundError):
            marker.unlink()
        return True


# --- firewall ---------------------------------------------------------------


def run_key(run_dir: Path) -> str:
    """Names a run machine-wide: run names are only unique within one $CLOUDINITD_HOME."""
    return str(Path(run_dir).resolve())


def _sync(d: Path, bridge: Bridge, state: dict) -> None:
    from cloudinitd.providers.aptproxy import APT_PROXY_PORT

    firewall.write_state(d, state)
    firewall.nft(firewall.render(bridge.name, bridge.gateway, APT_PROXY_PORT, state))


def _sweep_ports(d: Path, bridge: Bridge) -> None:
    """Drop rules of ports whose lease is gone (a crash between destroy and detach)."""
    state = firewall.read_state(d)
    taken = _read_table(d)["leases"]
    stale = [n for n, p in state["ports"].items() if taken.get(p["address"]) != p["owner"]]
    if stale:
        for name in stale:
            del state["ports"][name]
        _sync(d, bridge, state)


def attach_port(port: str, *, run: str, address: str, mac: str, owner: str) -> None:
    """Bind `port` (a veth or tap name of ours) to its MAC, its leased address and its run.

    Call before the instance starts: until then a port of ours has no rules
    and drops everything it sends. `run` is `run_key(run_dir)`; `owner` the
    lease owner, so `clean` can drop rules whose lease is gone.
    """
    bridge = bridge_config()
    with locked() as d:
        state = firewall.read_state(d)
        state["ports"][port] = {"run": run, "address": address, "mac": mac, "owner": owner}
        _sync(d, bridge, state)


def detach_ports(ports: list[str]) -> None:
    bridge = bridge_config()
    with locked() as d:
        state = firewall.read_state(d)
        gone = [p for p in ports if state["ports"].pop(p, None) is not None]
        if gone:
            _sync(d, bridge, state)


def set_gateway_ports(run: str, ports: list[int]) -> None:
    """Exactly these TCP ports on the gateway are open to the instances of `run` (a `run_key`)."""
    bridge = bridge_config()
    with locked() as d:
        state = firewall.read_state(d)
        wanted = sorted({int(p) for p in ports})
        if state["gateway_ports"].get(run, []) == wanted:
            return
        if wanted:
            state["gateway_ports"][run] = wanted
        else:
            state["gateway_ports"].pop(run, None)
        _sync(d, bridge, state)


def allow_gateway_port(run: str, port: int) -> None:
    """Let the instances of `run` (a `run_key`) open TCP `port` on the gateway address."""
    with locked() as d:
        have = firewall.read_state(d)["gateway_ports"].get(run, [])
    set_gateway_ports(run, [*have, port])


def revoke_gateway_port(run: str, port: int | None = None) -> None:
    """Undo `allow_gateway_port` (every port of the run when `port` is None)."""
    with locked() as d:
        have = firewall.read_state(d)["gateway_ports"].get(run, [])
    set_gateway_ports(run, [p for p in have if port is not None and p != port])


# The apt proxy moved to its own module; these names stay importable from here.
from cloudinitd.providers.aptproxy import (  # noqa: E402
    APT_PROXY_PORT,
    apt_cache_dir,
    apt_proxy_pid,
    ensure_apt_proxy,
    host_debian_mirror,
)

__all__ = [
    "APT_PROXY_PORT",
    "Bridge",
    "allow_gateway_port",
    "apt_cache_dir",
    "apt_proxy_pid",
    "attach_port",
    "bridge_config",
    "bridge_exists",
    "detach_ports",
    "ensure_apt_proxy",
    "ensure_bridge",
    "host_debian_mirror",
    "lease_address",
    "leases",
    "release_address",
    "revoke_gateway_port",
    "run_key",
    "set_gateway_ports",
    "teardown_if_unused",
]
