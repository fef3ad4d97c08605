"""Benchmark: the ec2 provider against the local EC2 test cloud (a moto server process).

    .venv/bin/python bench/bench_ec2.py [--n 100] [--workers 8]

Scenario A: one service of N instances (one RunInstances).
Scenario B: N one-instance services (N RunInstances), sequential and on a
thread pool. For each: API calls made (counted with botocore event hooks,
per operation, plus HTTP attempts) and seconds for launch, wait_running and
terminate. Nothing contacts an instance address (moto invents them).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cloudinitd.plan.model import CloudSpec  # noqa: E402
from cloudinitd.providers import get_provider  # noqa: E402
from cloudinitd.providers.base import LaunchRequest  # noqa: E402
from tests.support.testcloud import ACCESS_KEY, SECRET_KEY, TestCloud  # noqa: E402

PUBKEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHx5wQe1Vq6bXh0m0d3mJxk6iH0cS3z6m2fXn8V0q4mB bench"


class Counting:
    """Counts API calls (before-call) and HTTP attempts (before-send) on one client."""

    def __init__(self, client):
        self.calls: Counter[str] = Counter()
        self.sends = 0
        client.meta.events.register("before-call.ec2", self._call)
        client.meta.events.register("before-send.ec2", self._send)

    def _call(self, model, **_):
        self.calls[model.name] += 1

    def _send(self, **_):
        self.sends += 1

    def take(self) -> tuple[Counter[str], int]:
        calls, sends = self.calls, self.sends
        self.calls, self.sends = Counter(), 0
        return calls, sends


def request(run: str, service: str, indexes: list[int]) -> LaunchRequest:
    return LaunchRequest(
        run=run,
        plan="bench",
        service=service,
        cloud="bench",
        indexes=indexes,
        client_token=uuid.uuid4().hex,
        tags={"run": run, "service": service, "plan": "bench"},
        ssh_user="root",
        ssh_public_key=PUBKEY,
        hostnames=[f"{service}-{i}" for i in indexes],
        image="ami-12345678",
    )


def phase(label: str, counting: Counting, fn) -> object:
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    calls, sends = counting.take()
    detail = ", ".join(f"{op} {n}" for op, n in sorted(calls.items()))
    print(
        f"  {label:<34} {seconds:7.2f} s  {sum(calls.values()):4d} calls ({detail}); {sends} HTTP"
    )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()
    n = args.n

    os.environ["BENCH_EC2_AK"], os.environ["BENCH_EC2_SK"] = ACCESS_KEY, SECRET_KEY
    cloud = TestCloud("bench").start()
    try:
        with tempfile.TemporaryDirectory() as home:
            spec = CloudSpec("bench", "ec2", cloud.cloud_options("BENCH_EC2_AK", "BENCH_EC2_SK"))
            provider = get_provider(spec, Path(home))
            counting = Counting(provider.client)
            phase("warm-up (check)", counting, provider.check)

            print(f"A. one service of {n} instances (one RunInstances)")
            infos = phase(
                "launch",
                counting,
                lambda: provider.launch(request("a", "big", list(range(n))), lambda i, x: None),
            )
            ids = [i.instance_id for i in infos]
            phase("wait_running", counting, lambda: provider.wait_running(ids, timeout=120))
            phase("find_run_instances", counting, lambda: provider.find_run_instances("a"))
            phase("terminate (waits)", counting, lambda: provider.terminate(ids, timeout=120))

            print(f"B. {n} one-instance services, sequential ({n} RunInstances)")

            def seq():
                return [
                    provider.launch(request("b", f"s{k}", [0]), lambda i, x: None)[0]
                    for k in range(n)
                ]

            infos = phase("launch", counting, seq)
            ids = [i.instance_id for i in infos]
            phase("wait_running", counting, lambda: provider.wait_running(ids, timeout=120))
            phase("terminate (waits)", counting, lambda: provider.terminate(ids, timeout=120))

            print(f"C. {n} one-instance services, {args.workers} threads")

            def par():
                with ThreadPoolExecutor(args.workers) as pool:
                    return list(
                        pool.map(
                            lambda k: provider.launch(
                                request("c", f"s{k}", [0]), lambda i, x: None
                            )[0],
                            range(n),
                        )
                    )

            infos = phase("launch", counting, par)
            ids = [i.instance_id for i in infos]
            phase("wait_running", counting, lambda: provider.wait_running(ids, timeout=120))
            phase("terminate (waits)", counting, lambda: provider.terminate(ids, timeout=120))
            phase("release (key pairs)", counting, lambda: [provider.release(r) for r in "abc"])
            left = cloud.stats()["live"]
            print(f"live instances left on the test cloud: {left}")
            return 0 if left == 0 else 1
    finally:
        cloud.stop()


if __name__ == "__main__":
    sys.exit(main())
