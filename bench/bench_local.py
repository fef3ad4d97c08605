"""Benchmark the `local` provider: launch N containers, time until `ssh true` works on all.

    sudo .venv/bin/python bench/bench_local.py [N ...]     (default: 1 5 20)

Uses the real bridge configuration (CLOUDINITD_BRIDGE / CLOUDINITD_SUBNET,
default cidbr0 10.177.0.0/24) and a throw-away $CLOUDINITD_HOME; the image
cache is $CLOUDINITD_IMAGE_CACHE (default .cache/images in the checkout).
Everything it launches is terminated at the end, also on failure.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("CLOUDINITD_IMAGE_CACHE", str(REPO / ".cache" / "images"))

from cloudinitd.plan.model import CloudSpec  # noqa: E402
from cloudinitd.providers.base import LaunchRequest  # noqa: E402
from cloudinitd.providers.local import LocalProvider, image  # noqa: E402

SSH_OPTS = [
    "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
    "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR",
]  # fmt: skip


def ssh_true(address: str, key: Path, deadline: float) -> float:
    """Retry `ssh root@address true` until it succeeds; return when it did."""
    while True:
        proc = subprocess.run(
            ["ssh", "-i", str(key), *SSH_OPTS, f"root@{address}", "true"], capture_output=True
        )
        if proc.returncode == 0:
            return time.monotonic()
        if time.monotonic() > deadline:
            raise RuntimeError(f"ssh {address}: {proc.stderr.decode().strip()}")
        time.sleep(0.05)


def bench(provider: LocalProvider, key: Path, n: int) -> dict[str, float]:
    run = f"bench-{n}-{secrets.token_hex(3)}"
    request = LaunchRequest(
        run=run, plan="bench", service="node", cloud="local", indexes=list(range(n)),
        client_token=secrets.token_hex(8), tags={"run": run}, ssh_user="root",
        ssh_public_key=(key.parent / (key.name + ".pub")).read_text(),
        hostnames=[f"node-{i}" for i in range(n)], image="debian-12",
    )  # fmt: skip
    t0 = time.monotonic()
    names: list[str] = []
    try:
        infos = provider.launch(request, lambda i, info: names.append(info.instance_id))
        t_launch = time.monotonic()
        infos = provider.wait_running([i.instance_id for i in infos], timeout=300)
        t_port = time.monotonic()
        with ThreadPoolExecutor(max_workers=min(n, 16)) as pool:
            done = list(pool.map(lambda i: ssh_true(i.address, key, t0 + 300), infos))
        t_ssh = max(done)
    finally:
        t_term0 = time.monotonic()
        provider.terminate(names)
        t_term = time.monotonic() - t_term0
    return {
        "launch_call": t_launch - t0,
        "sshd_port_open": t_port - t0,
        "ssh_true_all": t_ssh - t0,
        "terminate": t_term,
    }


def main(argv: list[str]) -> int:
    counts = [int(a) for a in argv] or [1, 5, 20]
    with tempfile.TemporaryDirectory(prefix="bench-local-") as tmp:
        home = Path(tmp)
        key = home / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        provider = LocalProvider(CloudSpec(name="local", provider="local"), home)
        print(provider.check())
        t = time.monotonic()
        image.ensure_image("debian-12", provider.progress)
        print(f"base image ready in {time.monotonic() - t:.2f} s (0 = cached)")
        print(
            f"{'N':>4} {'launch()':>9} {'port 22':>9} {'ssh true':>9} {'per host':>9} {'terminate':>10}"
        )
        try:
            for n in counts:
                r = bench(provider, key, n)
                print(
                    f"{n:>4} {r['launch_call']:>8.2f}s {r['sshd_port_open']:>8.2f}s "
                    f"{r['ssh_true_all']:>8.2f}s {r['ssh_true_all'] / n:>8.3f}s "
                    f"{r['terminate']:>9.2f}s",
                    flush=True,
                )
        finally:
            provider.release("bench")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
