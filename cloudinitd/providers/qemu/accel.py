"""Choose KVM or TCG: KVM only when it demonstrably boots a kernel here.

/dev/kvm existing is not enough: some hosts offer a KVM flavour (PVM) on
which a stock Debian kernel hangs early. So a probe boots the image's kernel
with no root disk and waits for the panic it must reach; a prompt panic
means KVM works. The verdict is cached per host kernel and guest kernel.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

from cloudinitd.errors import ProviderError
from cloudinitd.settings import settings

ENV = "CLOUDINITD_QEMU_ACCEL"
PROBE_TIMEOUT = 20.0


def choose_accel(kernel: Path, state_dir: Path, override: str | None = None) -> str:
    """'kvm' or 'tcg'. `override` (cloud option) or $CLOUDINITD_QEMU_ACCEL wins."""
    forced = (override or settings().qemu_accel or "").strip().lower()
    if forced:
        if forced not in ("kvm", "tcg"):
            raise ProviderError(f"{ENV}/accel must be 'kvm' or 'tcg', not {forced!r}")
        if forced == "kvm" and not os.access("/dev/kvm", os.R_OK | os.W_OK):
            raise ProviderError("accel kvm requested but /dev/kvm is missing or not accessible")
        return forced
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg"
    cache = state_dir / "accel.json"
    key = f"{platform.release()} {kernel} {kernel.stat().st_mtime_ns}"
    with contextlib.suppress(OSError, ValueError):
        cached = json.loads(cache.read_text())
        if cached.get("key") == key:
            return cached["accel"]
    accel = "kvm" if probe_kvm(kernel) else "tcg"
    state_dir.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"key": key, "accel": accel, "probed": time.time()}))
    return accel


def probe_kvm(kernel: Path, timeout: float = PROBE_TIMEOUT) -> bool:
    """Boot `kernel` under KVM without a root disk; True if it panics in time."""
    with tempfile.TemporaryDirectory(prefix="cidq-probe-") as tmp:
        serial = Path(tmp) / "serial.log"
        cmd = [
            "qemu-system-x86_64",
            "-accel",
            "kvm",
            "-cpu",
            "host",
            "-m",
            "256",
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
            "-kernel",
            str(kernel),
            "-append",
            "console=ttyS0 panic=-1 root=/dev/nonexistent",
            "-serial",
            f"file:{serial}",
        ]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return False
        text = serial.read_text(errors="replace") if serial.exists() else ""
        return "Kernel panic" in text or "VFS:" in text
