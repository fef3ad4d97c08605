"""Fixtures for real LXC instances of the `local` provider and for hostnet.

Every fixture here isolates its machine-wide state (its own bridge name,
subnet, lease directory and apt cache) so tests never disturb a real
`cidbr0` or another engineer's tests, and always cleans up in a finalizer,
also when the test fails. A missing requirement FAILS the test, never skips.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cloudinitd.plan.model import CloudSpec
from cloudinitd.providers import aptproxy, firewall
from cloudinitd.providers.base import LaunchRequest
from cloudinitd.providers.local import LocalProvider
from cloudinitd.providers.local import lxc as lxc_cmd

REPO = Path(__file__).resolve().parents[2]
# Cached base image shared by all test sessions (built once, ~3 min).
DEFAULT_IMAGE_CACHE = REPO / ".cache" / "images"
TEST_APT_CACHES = Path("/var/cache/cloudinitd/test-apt")

SSH_OPTS = [
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "BatchMode=yes",
    "-o",
    "ConnectTimeout=10",
    "-o",
    "LogLevel=ERROR",
]


def require_lxc() -> None:
    """Fail (not skip) with a clear message when LXC cannot run here."""
    if os.geteuid() != 0:
        pytest.fail("LXC tests need root (system containers, a bridge)", pytrace=False)
    for tool, package in (
        ("lxc-start", "lxc"),
        ("debootstrap", "debootstrap"),
        ("ip", "iproute2"),
        ("ssh", "openssh-client"),
        ("nft", "nftables"),
    ):
        if not shutil.which(tool):
            pytest.fail(
                f"{tool} not found: apt-get install {package} "
                "(scripts/install-system-deps.sh installs everything)",
                pytrace=False,
            )
    if not Path("/usr/sbin/apt-cacher-ng").exists():
        pytest.fail("apt-cacher-ng not found: apt-get install apt-cacher-ng", pytrace=False)


def _used_networks() -> list[ipaddress.IPv4Network]:
    out = subprocess.run(
        ["ip", "-j", "-4", "route", "show", "table", "all"], capture_output=True, text=True
    ).stdout
    nets = []
    for r in json.loads(out or "[]"):
        with contextlib.suppress(ValueError):
            if r.get("dst") not in (None, "default"):
                nets.append(ipaddress.IPv4Network(r["dst"], strict=False))
    return nets


def free_test_subnet() -> str:
    """A 10.177.X.0/24 (X >= 100) that no route uses: tests never share cidbr0."""
    used = _used_networks()
    for _ in range(200):
        net = ipaddress.IPv4Network(f"10.177.{100 + secrets.randbelow(150)}.0/24")
        if not any(net.overlaps(u) for u in used):
            return str(net)
    raise RuntimeError("no free 10.177.x.0/24 for a test bridge")


@dataclass
class IsolatedNet:
    bridge: str
    subnet: str
    net_dir: Path
    apt_cache: Path

    def env(self) -> dict[str, str]:
        return {
            "CLOUDINITD_BRIDGE": self.bridge,
            "CLOUDINITD_SUBNET": self.subnet,
            "CLOUDINITD_NET_DIR": str(self.net_dir),
            "CLOUDINITD_APT_CACHE": str(self.apt_cache),
        }


def force_teardown(net: IsolatedNet) -> None:
    """Remove the test bridge, its firewall tables and apt proxy whatever the lease table says.

    Runs with the test's environment still set (the proxy's folder is named
    after the bridge).
    """
    with contextlib.suppress(Exception):
        aptproxy.stop_apt_proxy()
    with contextlib.suppress(Exception):
        firewall.nft(firewall.remove_text(net.bridge))
    if Path("/sys/class/net", net.bridge).exists():
        subprocess.run(["ip", "link", "del", net.bridge], capture_output=True)
    shutil.rmtree(net.apt_cache, ignore_errors=True)


@contextlib.contextmanager
def isolated_net(tmp: Path) -> Iterator[IsolatedNet]:
    """Point hostnet at a private bridge/subnet/lease dir for the duration."""
    bridge = f"cidt{secrets.token_hex(3)}"
    net = IsolatedNet(
        bridge=bridge,
        subnet=free_test_subnet(),
        net_dir=tmp / "net",
        # The proxy runs as user apt-cacher-ng, who cannot enter pytest's 0700 tmp.
        apt_cache=TEST_APT_CACHES / bridge,
    )
    with pytest.MonkeyPatch.context() as mp:
        for key, value in net.env().items():
            mp.setenv(key, value)
        mp.setenv(
            "CLOUDINITD_IMAGE_CACHE",
            os.environ.get("CLOUDINITD_IMAGE_CACHE", str(DEFAULT_IMAGE_CACHE)),
        )
        try:
            yield net
        finally:
            force_teardown(net)


def destroy_all(provider: LocalProvider) -> None:
    """Finalizer: every container under the provider's lxcpath, gone."""
    if not provider.lxcpath.is_dir():
        return
    names = [d.name for d in provider.lxcpath.iterdir() if d.is_dir()]
    if names:
        with contextlib.suppress(Exception):
            provider.terminate(names)
        for name in names:  # belt and braces if terminate itself failed
            with contextlib.suppress(Exception):
                lxc_cmd.destroy(name, provider.lxcpath)
    with contextlib.suppress(Exception):
        provider.release("*")


@dataclass
class Keypair:
    private: Path
    public: str


def make_keypair(directory: Path) -> Keypair:
    directory.mkdir(parents=True, exist_ok=True)
    key = directory / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return Keypair(private=key, public=(directory / "id_ed25519.pub").read_text().strip())


def ssh(
    address: str, key: Path, command: str, user: str = "root", timeout: float = 300
) -> subprocess.CompletedProcess:
    """Run `command` on an instance with the system OpenSSH client."""
    return subprocess.run(
        ["ssh", "-i", str(key), *SSH_OPTS, f"{user}@{address}", command],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def make_request(
    run: str,
    service: str,
    count: int,
    key: Keypair,
    *,
    ssh_user: str = "root",
    token: str | None = None,
    start_index: int = 0,
    size: str | None = None,
    image: str | None = "debian-12",
) -> LaunchRequest:
    indexes = list(range(start_index, start_index + count))
    return LaunchRequest(
        run=run,
        plan="test-plan",
        service=service,
        cloud="local",
        indexes=indexes,
        client_token=token or secrets.token_hex(8),
        tags={"run": run, "service": service, "plan": "test-plan"},
        ssh_user=ssh_user,
        ssh_public_key=key.public,
        hostnames=[f"{service}-{i}" for i in indexes],
        image=image,
        size=size,
    )


def new_provider(home: Path) -> LocalProvider:
    return LocalProvider(CloudSpec(name="local", provider="local"), home)


@pytest.fixture(scope="session")
def lxc_ready() -> None:
    require_lxc()


@pytest.fixture(scope="module")
def local_net(lxc_ready, tmp_path_factory) -> Iterator[IsolatedNet]:
    """A private bridge + lease table + apt proxy cache for one test module."""
    with isolated_net(tmp_path_factory.mktemp("lxcnet")) as net:
        yield net


@pytest.fixture(scope="module")
def local_provider(local_net, tmp_path_factory) -> Iterator[LocalProvider]:
    """A LocalProvider with its own $CLOUDINITD_HOME; all its containers die at the end."""
    provider = new_provider(tmp_path_factory.mktemp("home"))
    try:
        yield provider
    finally:
        destroy_all(provider)


@pytest.fixture(scope="module")
def local_keypair(tmp_path_factory) -> Keypair:
    return make_keypair(tmp_path_factory.mktemp("keys"))


@contextlib.contextmanager
def local_cli_in(tmp: Path) -> Iterator:
    """A CLI with its own home under `tmp` and its own bridge; every container goes at the end."""
    from tests.support.cli import Cli

    with isolated_net(tmp) as net:
        cli = Cli(tmp / "home")
        cli.net = net
        try:
            yield cli
        finally:
            destroy_all(new_provider(cli.home))


@pytest.fixture
def local_cli(lxc_ready, tmp_path: Path) -> Iterator:
    with local_cli_in(tmp_path) as cli:
        yield cli


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below `path` in this machine's mount table (a container's overlay, its disk)."""
    base = str(Path(path).resolve())
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        target = line.split()[4].replace("\\040", " ")
        if target == base or target.startswith(base + "/"):
            out.append(target)
    return out


def loops_under(path: Path) -> list[str]:
    """`losetup -a` lines whose backing file is at or below `path` (deleted ones too)."""
    base = str(Path(path).resolve())
    listed = subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout
    return [line for line in listed.splitlines() if f"({base}/" in line]


def wait_no_loops(path: Path, timeout: float = 60) -> list[str]:
    """Loop devices on images under `path`, after giving a lazily unmounted disk time to go."""
    deadline = time.monotonic() + timeout
    while (left := loops_under(path)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left
