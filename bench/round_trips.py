"""SSH requests per boot step: how many times the controller waits for a host's answer.

    .venv/bin/python bench/round_trips.py [--hosts 3]

Boots the W2 plan of bench_fanout.py (one static service per host: upload a
script, run it, read its export back) in this process, with paramiko
instrumented, and prints per host: channels opened, exec requests, SFTP
requests (each an answer waited for). Then the same for `terminate`.
A step's round trips are what loopback hides and a WAN multiplies.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import paramiko  # noqa: E402

from bench.bench_fanout import start_hosts, w2_plan  # noqa: E402

COUNTS: collections.Counter[str] = collections.Counter()


def _count(cls: type, name: str, label: str) -> None:
    original = getattr(cls, name)

    def wrapper(self, *args, **kwargs):
        COUNTS[label] += 1
        return original(self, *args, **kwargs)

    setattr(cls, name, wrapper)


def instrument() -> None:
    _count(paramiko.Transport, "open_channel", "channel opens")
    _count(paramiko.Channel, "exec_command", "exec requests")
    _count(paramiko.Channel, "invoke_subsystem", "sftp sessions")
    _count(paramiko.SFTPClient, "_request", "sftp requests")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, default=3)
    args = ap.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="cid-rt-"))
    hosts = []
    try:
        hosts, key = start_hosts(base, args.hosts)
        for h in hosts:
            h.start(wait=False)
        for h in hosts:
            h.wait_listening(timeout=60)
        os.environ["CLOUDINITD_HOME"] = str(base / "home")
        plan = w2_plan(base / "w2", hosts, key)
        instrument()
        from cloudinitd.cli.main import cli
        from cloudinitd.remote import close_all
        for label, words in (("boot", ["boot", str(plan), "--name", "rt", "-q"]),
                             ("terminate", ["terminate", "rt", "-q"])):
            COUNTS.clear()
            try:
                cli(words, prog_name="cloudinitd", standalone_mode=False)
            finally:
                close_all()
            waits = sum(COUNTS.values())
            parts = ", ".join(f"{k} {v / args.hosts:g}" for k, v in sorted(COUNTS.items()))
            print(f"{label}: per host {parts}; answers waited for {waits / args.hosts:g}")
    finally:
        for h in hosts:
            h.close()
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
