"""Fixtures for real QEMU VMs of the `qemu` provider.

VMs sit on a private test bridge (same isolation as the LXC fixtures:
own bridge name, subnet, lease directory, apt cache), use the shared image
cache (built once, several minutes), and are destroyed in finalizers even
when a test fails. A missing requirement FAILS the test, never skips.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloudinitd.plan.model import CloudSpec
from cloudinitd.providers.qemu import QemuProvider
from cloudinitd.providers.qemu import image as qemu_image
from cloudinitd.providers.qemu import vm as qemu_vm
from tests.support.lxc import DEFAULT_IMAGE_CACHE, IsolatedNet, isolated_net


def require_qemu() -> None:
    if os.geteuid() != 0:
        pytest.fail("QEMU tests need root (tap devices, a bridge)", pytrace=False)
    missing = qemu_vm.missing_tools()
    if not shutil.which("ssh"):
        missing.append("ssh (apt-get install openssh-client)")
    if not Path("/usr/sbin/apt-cacher-ng").exists():
        missing.append("apt-cacher-ng (apt-get install apt-cacher-ng)")
    if missing:
        pytest.fail("missing: " + ", ".join(missing), pytrace=False)
    if not Path("/dev/net/tun").exists():
        pytest.fail("/dev/net/tun missing: tap devices cannot be made", pytrace=False)


def image_cache() -> Path:
    return Path(os.environ.get("CLOUDINITD_IMAGE_CACHE") or DEFAULT_IMAGE_CACHE)


@pytest.fixture(scope="session")
def qemu_base_image() -> qemu_image.BaseImage:
    """The cached VM image (built on first use: debootstrap, ~5 min)."""
    require_qemu()
    return qemu_image.ensure_image(image_cache(), "debian-12")


@pytest.fixture(scope="module")
def qemu_net(qemu_base_image, tmp_path_factory) -> Iterator[IsolatedNet]:
    with isolated_net(tmp_path_factory.mktemp("qemunet")) as net:
        yield net


def qemu_processes(home: Path) -> list[int]:
    """Pids of live qemu processes started for VMs under `home`."""
    needle = str(home / "qemu").encode()
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmd = (proc / "cmdline").read_bytes()
            state = (proc / "stat").read_text().rpartition(")")[2].split()[0]
            if cmd.startswith(b"qemu-system") and needle in cmd and state != "Z":
                pids.append(int(proc.name))
    return pids


def leftovers(home: Path, taps: list[str]) -> list[str]:
    """Everything a terminated set of VMs might have left behind; empty when clean."""
    found = [f"qemu pid {pid}" for pid in qemu_processes(home)]
    found += [f"tap {t}" for t in taps if Path("/sys/class/net", t).exists()]
    state = home / "qemu"
    if state.is_dir():
        found += [f"file {p}" for p in state.rglob("*.qcow2")]
        found += [f"vm dir {p}" for p in state.glob("qemu-*")]
    return found


def destroy_all(home: Path) -> None:
    """Finalizer: terminate every VM folder under `home`, then kill any stray qemu by pid."""
    provider = QemuProvider(CloudSpec(name="qemu", provider="qemu"), home)
    files = provider._all_files()
    ids = [f.dir.name for f in files]
    taps = [f.read().get("tap") or qemu_vm.tap_name(f.dir.name) for f in files]
    if ids:
        with contextlib.suppress(Exception):
            provider.terminate(ids)
    for pid in qemu_processes(home):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)
    for tap in taps:
        if Path("/sys/class/net", tap).exists():
            subprocess.run(["ip", "link", "del", tap], capture_output=True)
    with contextlib.suppress(Exception):
        provider.release("*")


@pytest.fixture(scope="module")
def qemu_provider(qemu_net, tmp_path_factory) -> Iterator[QemuProvider]:
    """A QemuProvider with its own $CLOUDINITD_HOME; all its VMs die at the end."""
    home = tmp_path_factory.mktemp("qemuhome")
    provider = QemuProvider(CloudSpec(name="qemu", provider="qemu"), home)
    try:
        yield provider
    finally:
        destroy_all(home)
