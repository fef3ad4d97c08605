"""Find and remove qemu leftovers for `cloudinitd clean`.

Strays are VMs whose run is gone from the store (or that a crash left half
made) and tap devices of ours that no VM folder claims.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cloudinitd.plan.model import CloudSpec
from cloudinitd.providers.qemu import vm
from cloudinitd.providers.qemu.provider import QemuProvider


@dataclass(frozen=True)
class Stray:
    kind: str  # "vm" or "tap"
    name: str  # instance id or tap name
    run: str | None
    reason: str


def find_strays(home: Path, run_exists: Callable[[str], bool]) -> list[Stray]:
    """Leftovers under `home`; `run_exists(run)` says whether the store still knows a run."""
    provider = QemuProvider(CloudSpec(name="qemu", provider="qemu"), home)
    strays = []
    claimed = set()
    for files in provider._all_files():
        data = files.read()
        claimed.add(data.get("tap") or vm.tap_name(files.dir.name))
        run = data.get("run")
        if not run or not run_exists(run):
            strays.append(Stray("vm", files.dir.name, run, f"run {run!r} no longer exists"))
        elif data.get("pid") and not files.alive():
            strays.append(Stray("vm", files.dir.name, run, "qemu process has exited"))
    # Taps are machine-wide; another $CLOUDINITD_HOME may own one, so a tap is a
    # stray only when no qemu process uses it either.
    for tap in vm.our_taps():
        if tap not in claimed and not vm.tap_in_use(tap):
            strays.append(Stray("tap", tap, None, "tap device without a VM"))
    return strays


def clean_strays(home: Path, strays: list[Stray]) -> list[str]:
    """Remove the given strays; return one line per thing removed."""
    provider = QemuProvider(CloudSpec(name="qemu", provider="qemu"), home)
    done = []
    for s in strays:
        if s.kind == "vm":
            provider.terminate([s.name])
            done.append(f"terminated qemu VM {s.name} ({s.reason})")
        else:
            vm.delete_tap(s.name)
            done.append(f"deleted tap {s.name} ({s.reason})")
    return done
