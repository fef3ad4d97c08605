"""TCP ports on this machine or our bridge: does something answer, is a port free."""

from __future__ import annotations

import socket


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """Something accepts a TCP connection on host:port within `timeout` seconds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def ssh_answers(host: str, port: int = 22, timeout: float = 1.0) -> bool:
    """An SSH server answers there: its banner, not a bare accept (a VM's port forward,
    a half-started guest and anything else listening also accept)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout * 3)
            return s.recv(4).startswith(b"SSH-")
    except OSError:
        return False


def port_free(address: str, port: int) -> bool:
    """Nothing listens on address:port, so we may bind it (TIME_WAIT leftovers allowed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((address, port))
        except OSError:
            return False
    return True


def free_port(address: str) -> int:
    """A port the kernel says is free on `address` now; OSError when the address is not
    on this machine."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((address, 0))
        return s.getsockname()[1]
