"""Ports on this machine and the hosts it reaches: is something listening, is a port free.

One home for the checks the home share, the local provider and the apt proxy
each wrote for themselves.
"""

from __future__ import annotations

import socket


def listening(address: str, port: int, timeout: float = 0.5) -> bool:
    """Something accepts TCP connections at `address`:`port` (within `timeout` seconds)."""
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def port_free(address: str, port: int) -> bool:
    """`port` on `address` (of this machine) can be listened on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((address, port))
        except OSError:
            return False
    return True
