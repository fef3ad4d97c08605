"""Benchmark: seconds from `cloudinitd boot` to a ready 3-VM NFS cluster (qemu provider).

    .venv/bin/python bench/bench_nfs.py [--compute N] [--keep]

Boots plans/nfs-cluster in a throwaway $CLOUDINITD_HOME, prints boot-to-ready
seconds, per-service times, KVM or TCG, memory of each qemu process, then
terminates. Needs root, QEMU and the cached image (built on first use).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent / "cloudinitd"
PLAN = REPO / "plans" / "nfs-cluster" / "plan.yml"


def cli(env: dict[str, str], *args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compute", type=int, default=2, help="compute nodes (default 2)")
    parser.add_argument("--keep", action="store_true", help="leave the cluster running")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="cid-bench-nfs-"))
    env = {**os.environ, "CLOUDINITD_HOME": str(home)}
    env.setdefault("CLOUDINITD_IMAGE_CACHE", str(REPO / ".cache" / "images"))
    run = f"bench-nfs-{secrets.token_hex(2)}"
    t0 = time.monotonic()
    boot = cli(
        env,
        "boot",
        str(PLAN),
        "--name",
        run,
        "--json",
        "-q",
        "--var",
        f"compute_count={args.compute}",
    )
    wall = time.monotonic() - t0
    try:
        if boot.returncode != 0:
            print(f"boot failed (exit {boot.returncode}):\n{boot.stdout}\n{boot.stderr}")
            return 1
        report = json.loads(boot.stdout)
        status = json.loads(cli(env, "status", run, "--json").stdout)
        instances = [i for s in status["services"].values() for i in s["instances"] if i.get("pid")]
        accel = sorted({i.get("accel", "?") for i in instances})
        print(
            f"nfs-cluster: head + {args.compute} compute, accel {'/'.join(accel).upper()}, "
            f"{os.cpu_count()} host cores"
        )
        print(f"boot to ready: {wall:.1f} s wall ({report['seconds']:.1f} s in the engine)")
        for name, svc in report["services"].items():
            print(f"  {name:<10} {svc['state']:<8} done at {svc['seconds']:.1f} s")
        for inst in instances:
            with_rss = (
                f"{rss_mb(inst['pid']):.0f} MB RSS"
                if Path(f"/proc/{inst['pid']}").exists()
                else "gone"
            )
            print(
                f"  {inst['hostname']:<10} {inst['address']:<14} {inst.get('memory_mb')} MB "
                f"guest, {with_rss}"
            )
    finally:
        if not args.keep:
            t1 = time.monotonic()
            term = cli(env, "terminate", run, "-q")
            print(f"terminate: {time.monotonic() - t1:.1f} s (exit {term.returncode})")
        else:
            print(f"kept: CLOUDINITD_HOME={home} cloudinitd terminate {run}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
