"""Remote execution over SSH (paramiko): wait for hosts, run steps, pin host keys.

Public surface used by the engine; see the submodules for the why:
`session` (connections, wait_for_ssh), `hostkeys` (TOFU pinning),
`steps` (run_step, run_ready, remove_run_dir), `channel` (streaming one command).
"""

import re
import socket
from typing import Any

from cloudinitd.remote import local as _local
from cloudinitd.remote import steps as _steps
from cloudinitd.remote.hostkeys import fingerprint, known_hosts_name
from cloudinitd.remote.local import LocalTarget
from cloudinitd.remote.script import interpreter, parse_export
from cloudinitd.remote.session import (
    Session,
    SshTarget,
    close_all,
    close_sessions,
    forget_host,
    forget_session,
    prewarm,
    session_for,
)
from cloudinitd.remote.session import wait_for_ssh as _wait_for_ssh


# A `local: true` service's target is a LocalTarget: its steps run here (remote/local.py).
def run_step(target: Any, **kw: Any) -> dict[str, Any]:
    mod = _local if isinstance(target, LocalTarget) else _steps
    return mod.run_step(target, **kw)


def run_ready(target: Any, **kw: Any) -> int:
    mod = _local if isinstance(target, LocalTarget) else _steps
    return mod.run_ready(target, **kw)


def remove_run_dir(target: Any, run: str, service: str = "-") -> None:
    mod = _local if isinstance(target, LocalTarget) else _steps
    mod.remove_run_dir(target, run, service)


_HOSTNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$")


def reported_hostname(target: Any, service: str) -> str | None:
    """The host's own name (`hostname` there; this machine's for a local target)."""
    if isinstance(target, LocalTarget):
        name = socket.gethostname()
    else:
        sess = session_for(target, service)
        if not sess.probed:  # the probe (wait_for_ssh) learns it with $HOME
            sess.probe()
        name = sess.hostname or ""
    return name if _HOSTNAME.match(name) else None


def wait_for_ssh(target: Any, timeout: float, service: str) -> None:
    if not isinstance(target, LocalTarget):
        _wait_for_ssh(target, timeout=timeout, service=service)


__all__ = [
    "LocalTarget",
    "Session",
    "SshTarget",
    "close_all",
    "close_sessions",
    "fingerprint",
    "forget_host",
    "forget_session",
    "interpreter",
    "known_hosts_name",
    "parse_export",
    "prewarm",
    "reported_hostname",
    "remove_run_dir",
    "run_ready",
    "run_step",
    "session_for",
    "wait_for_ssh",
]
