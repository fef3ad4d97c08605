"""Lease keepers: a small process on this machine per instance of a host-local provider
(`local`, `qemu`) that terminates the instance at its lease end (the run's `lifetime`),
whether or not any cloudinitd command (`watch`, `serve`, cron) runs then.

Why a process of our own and not a systemd timer: cloudinitd also runs where systemd is
not PID 1 (containers, CI), and a timer inside the guest could be cancelled by the guest.
The keeper is detached (its own session, parent init), sleeps in short steps, and
exits on its own as soon as the instance's folder is gone (terminated early); at the
lease end it calls the provider's own `terminate`, which also frees the instance's
address, bridge port and firewall rules. It does not survive a reboot of this machine;
neither do the instances (they are not restarted at boot).

    python -m cloudinitd.providers.lease KIND CLOUD OPTIONS_JSON HOME INSTANCE EXPIRES WATCH
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from cloudinitd.host import procs
from cloudinitd.host.waiting import wait_until

POLL = 2.0  # seconds between looks at the instance's folder
RETRIES, RETRY_WAIT = 5, 10.0  # a terminate that fails (a busy machine) is tried again
MARK = "cloudinitd.providers.lease"


def start_keeper(kind: str, cloud: str, options: dict[str, Any], home: Path,
                 instance_id: str, expires: float, watch: Path, log: Path) -> int:
    """Start the keeper of one instance (detached); returns its pid."""
    argv = [sys.executable, "-m", MARK, "--detach", kind, cloud, json.dumps(options),
            str(home), instance_id, repr(float(expires)), str(watch)]
    with open(log, "ab") as err:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=err, close_fds=True, cwd="/", start_new_session=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    proc.wait()
    proc.stdout.close()
    return int(line or 0)


def stop_keeper(pid: int | None, instance_id: str) -> None:
    """End a keeper early (its instance is being terminated); only a process that is
    really this instance's keeper (a pid may have been reused)."""
    if not pid or pid == os.getpid():  # the keeper itself is terminating its instance
        return
    keeper = procs.find(pid, MARK, instance_id, whole=True)
    if keeper:
        procs.send(keeper, signal.SIGTERM)


def keep(kind: str, cloud: str, options: dict[str, Any], home: Path, instance_id: str,
         expires: float, watch: Path) -> str:
    """Wait for the lease end, then terminate; returns what happened."""
    # The lease end is a wall-clock time (the run's creation + lifetime), so the deadline
    # is measured on the wall clock too.
    if wait_until(lambda: not watch.exists(), expires - time.time(), POLL, clock=time.time):
        return f"{instance_id}: gone before its lease end"
    from cloudinitd.plan.model import CloudSpec
    from cloudinitd.providers import get_provider

    provider = get_provider(CloudSpec(cloud, kind, options), home)
    for attempt in range(1, RETRIES + 1):
        try:
            provider.terminate([instance_id])
            break
        except Exception as exc:  # noqa: BLE001 (logged, tried again, then raised)
            print(f"lease keeper {instance_id}: terminate (try {attempt}): {exc}",
                  file=sys.stderr, flush=True)
            if attempt == RETRIES:
                raise
            time.sleep(RETRY_WAIT)
    return f"{instance_id}: lease over at {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())}" \
           " UTC, terminated"


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--detach":
        argv = argv[1:]
        pid = os.fork()
        if pid:  # the starter reads the keeper's pid and returns at once
            print(pid, flush=True)
            os._exit(0)
        os.setsid()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
    kind, cloud, options, home, instance_id, expires, watch = argv
    try:
        message = keep(kind, cloud, json.loads(options), Path(home), instance_id,
                       float(expires), Path(watch))
    except Exception as exc:  # noqa: BLE001 (a keeper has nobody to raise to: it logs)
        print(f"lease keeper {instance_id}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"lease keeper {message}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
