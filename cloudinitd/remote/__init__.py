"""Remote execution over SSH (Fabric): wait for hosts, run steps, pin host keys.

Public surface used by the engine; see the submodules for the why:
`session` (connections, wait_for_ssh), `hostkeys` (TOFU pinning),
`steps` (run_step, run_ready, remove_run_dir).
"""

from cloudinitd.remote.hostkeys import fingerprint, known_hosts_name
from cloudinitd.remote.session import (
    Session,
    SshTarget,
    close_all,
    close_sessions,
    forget_host,
    forget_session,
    session_for,
    wait_for_ssh,
)
from cloudinitd.remote.steps import (
    interpreter,
    parse_export,
    remove_run_dir,
    run_ready,
    run_step,
)

__all__ = [
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
    "remove_run_dir",
    "run_ready",
    "run_step",
    "session_for",
    "wait_for_ssh",
]
