"""The project's own bridge, machine-wide address leases and the apt proxy.

Shared by the `local` (LXC) and `qemu` providers. Everything here is
machine-wide state guarded by one fcntl lock in `$CLOUDINITD_NET_DIR`
(default /run/cloudinitd-net), so several cloudinitd processes (and both
providers) can lease addresses on the same bridge safely.

Network rules (see docs): a plain Linux bridge with the gateway address on
it, no NAT, IP forwarding never touched. Instances therefore reach only the
bridge: apt inside them goes through an apt-cacher-ng bound to the gateway.

Order callers should follow, so a concurrent `teardown_if_unused` never
removes the bridge under them: lease first, then `ensure_bridge`.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cloudinitd.errors import ProviderError

DEFAULT_BRIDGE = "cidbr0"
DEFAULT_SUBNET = "10.177.0.0/24"
APT_PROXY_PORT = 3142
DEFAULT_MIRROR = "http://deb.debian.org/debian/"


@dataclass(frozen=True)
class Bridge:
    name: str
    gateway: str
    network: ipaddress.IPv4Network


def bridge_config() -> Bridge:
    """The bridge we would use, from the environment; creates nothing."""
    name = os.environ.get("CLOUDINITD_BRIDGE", DEFAULT_BRIDGE)
    try:
        network = ipaddress.IPv4Network(os.environ.get("CLOUDINITD_SUBNET", DEFAULT_SUBNET))
    except ValueError as exc:
        raise ProviderError(f"CLOUDINITD_SUBNET: {exc}") from None
    if network.num_addresses < 8:
        raise ProviderError(f"CLOUDINITD_SUBNET {network} is too small (need at least /29)")
    return Bridge(name=name, gateway=str(network.network_address + 1), network=network)


def net_dir() -> Path:
    return Path(os.environ.get("CLOUDINITD_NET_DIR", "/run/cloudinitd-net"))


@contextlib.contextmanager
def _locked() -> Iterator[Path]:
    """Hold the machine-wide lock; yields the state directory."""
    d = net_dir()
    d.mkdir(parents=True, exist_ok=True, mode=0o755)
    with open(d / "lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield d
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


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
    with _locked() as d:
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
    with _locked() as d:
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
    with _locked() as d:
        table = _read_table(d)
        if table["leases"].pop(address, None) is not None:
            _write_table(d, table)


def leases() -> dict[str, str]:
    """address -> owner, for every current lease."""
    with _locked() as d:
        return dict(_read_table(d)["leases"])


# --- apt proxy --------------------------------------------------------------


def host_debian_mirror() -> str:
    """The Debian mirror the machine's own apt uses (sources.list / deb822), with a trailing /."""
    override = os.environ.get("CLOUDINITD_DEBIAN_MIRROR")
    if override:
        return override.rstrip("/") + "/"
    files = [Path("/etc/apt/sources.list")]
    files += sorted(Path("/etc/apt/sources.list.d").glob("*.list"))
    files += sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    for f in files:
        try:
            text = f.read_text()
        except OSError:
            continue
        uris = re.findall(r"^\s*URIs:\s*(\S+)", text, re.M)
        uris += re.findall(r"^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+\S+", text, re.M)
        for uri in uris:
            # the main archive, not security / third-party repositories
            if uri.startswith("http://") and re.search(r"/debian/?$", uri):
                return uri.rstrip("/") + "/"
    return DEFAULT_MIRROR


def _acng_dir(d: Path) -> Path:
    return d / "apt-cacher-ng"


def apt_cache_dir() -> Path:
    return Path(os.environ.get("CLOUDINITD_APT_CACHE", "/var/cache/cloudinitd/apt-cacher-ng"))


def _pid_alive(pid: int, needle: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return needle.encode() in cmdline


def _proxy_pid(d: Path) -> int | None:
    try:
        pid = int((_acng_dir(d) / "apt-cacher-ng.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _pid_alive(pid, "apt-cacher-ng") else None


def _port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _acng_config(bridge: Bridge, conf: Path) -> str:
    return "\n".join(
        [
            "# written by cloudinitd: apt proxy for instances on our bridge only",
            f"CacheDir: {apt_cache_dir()}",
            f"LogDir: {conf / 'log'}",
            "SupportDir: /usr/lib/apt-cacher-ng",
            f"Port: {APT_PROXY_PORT}",
            f"BindAddress: {bridge.gateway}",
            f"PidFile: {conf / 'apt-cacher-ng.pid'}",
            f"SocketPath: {conf / 'socket'}",
            "ForeGround: 0",
            # backends_debian (next to this file) names the machine's own mirror:
            # the package default remapping answers "503 Host not found" here.
            "Remap-debrep: file:deb_mirror*.gz /debian ; file:backends_debian",
            # Only the Debian archive above: instances must not use the proxy
            # to reach any other host.
            "ForceManaged: 1",
            "ReportPage: acng-report.html",
            "ExThreshold: 4",
            "",
        ]
    )


def ensure_apt_proxy(bridge: Bridge) -> str:
    """Start (once) apt-cacher-ng on the gateway address; return its URL."""
    url = f"http://{bridge.gateway}:{APT_PROXY_PORT}"
    binary = shutil.which("apt-cacher-ng") or "/usr/sbin/apt-cacher-ng"
    if not Path(binary).exists():
        raise ProviderError("apt-cacher-ng not found: apt-get install apt-cacher-ng")
    with _locked() as d:
        if _proxy_pid(d) and _port_open(bridge.gateway, APT_PROXY_PORT):
            return url
        conf = _acng_dir(d)
        (conf / "log").mkdir(parents=True, exist_ok=True)
        apt_cache_dir().mkdir(parents=True, exist_ok=True)
        (conf / "acng.conf").write_text(_acng_config(bridge, conf))
        (conf / "backends_debian").write_text(host_debian_mirror() + "\n")
        old = _proxy_pid(d)
        if old:  # alive but not answering on our address: restart it
            _stop_pid(old)
        proc = subprocess.run([binary, "-c", str(conf)], capture_output=True, text=True, timeout=30)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if _proxy_pid(d) and _port_open(bridge.gateway, APT_PROXY_PORT):
                return url
            time.sleep(0.1)
        log_tail = ""
        with contextlib.suppress(OSError):
            log_tail = (conf / "log" / "apt-cacher.err").read_text()[-500:]
        raise ProviderError(
            f"apt-cacher-ng did not start on {bridge.gateway}:{APT_PROXY_PORT} "
            f"(exit {proc.returncode}): {(proc.stderr or log_tail).strip()[-500:]}"
        )


def _stop_pid(pid: int, timeout: float = 10.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _pid_alive(pid, "apt-cacher-ng"):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)
    if _pid_alive(pid, "apt-cacher-ng"):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def apt_proxy_pid() -> int | None:
    """Pid of the apt-cacher-ng we started, if it is running."""
    return _proxy_pid(net_dir())


def teardown_if_unused() -> bool:
    """With no lease left: stop our apt proxy (by its pid) and delete our bridge."""
    bridge = bridge_config()
    with _locked() as d:
        if _read_table(d)["leases"]:
            return False
        pid = _proxy_pid(d)
        if pid:
            _stop_pid(pid)
        with contextlib.suppress(FileNotFoundError):
            (_acng_dir(d) / "apt-cacher-ng.pid").unlink()
        marker = d / "bridge-created"
        created = marker.exists() and marker.read_text().strip() == bridge.name
        if created and _link_exists(bridge.name):
            _ip("link", "del", bridge.name)
        with contextlib.suppress(FileNotFoundError):
            marker.unlink()
        return True
