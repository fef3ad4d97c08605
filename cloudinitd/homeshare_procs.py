"""Processes and ports of the home share: which sshd is ours, its children, free ports.

The chores themselves (psutil, sockets) live in `cloudinitd.host`; this module says
what they mean for the share's sshd.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from cloudinitd.homeshare_jail import HomeShareError
from cloudinitd.host import ports, procs

# A live (not zombie) process has this pid.
alive = procs.alive
# The share's sshd accepts connections.
listening = ports.port_open
port_free = ports.port_free


def is_our_sshd(pid: int, config: Path) -> bool:
    """True when `pid` is the sshd started with this share's config (not a reused pid)."""
    # sshd rewrites its title ("sshd: /usr/sbin/sshd -D -f CONFIG ... [listener]").
    return procs.find(pid, "sshd", f"-f {config} ") is not None


def free_port(address: str) -> int:
    try:
        return ports.free_port(address)
    except OSError as exc:
        raise HomeShareError(
            f"home share: cannot listen on {address}: {exc.strerror or exc}"
            " (is that address on this machine?)"
        ) from None


def pick_port(address: str, preferred: list[int]) -> int:
    for port in preferred:
        if port and ports.port_free(address, port):
            return port
    return free_port(address)


def log_tail(path: Path, lines: int = 8) -> str:
    with contextlib.suppress(OSError):
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    return ""
