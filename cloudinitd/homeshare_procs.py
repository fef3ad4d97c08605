"""Processes and ports of the home share: which sshd is ours, its children, free ports."""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path

from cloudinitd.homeshare_jail import HomeShareError


def is_our_sshd(pid: int, config: Path) -> bool:
    """True when `pid` is the sshd started with this share's config (not a reused pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    # sshd rewrites its title ("sshd: /usr/sbin/sshd -D -f CONFIG ... [listener]").
    return b"sshd" in cmdline and f"-f {config} ".encode() in cmdline.replace(b"\0", b" ")


def descendants(pid: int) -> list[int]:
    """Every process below `pid`: per-connection sshd monitors (they setsid()) and
    their sessions, which run chrooted as the shared user one level further down."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (entry / "stat").read_text()
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    out: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in out:
                out.append(child)
                todo.append(child)
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def port_free(address: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((address, port))
        except OSError:
            return False
    return True


def free_port(address: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((address, 0))
        except OSError as exc:
            raise HomeShareError(
                f"home share: cannot listen on {address}: {exc.strerror or exc}"
                " (is that address on this machine?)"
            ) from None
        return s.getsockname()[1]


def pick_port(address: str, preferred: list[int]) -> int:
    for port in preferred:
        if port and port_free(address, port):
            return port
    return free_port(address)


def listening(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except OSError:
        return False


def log_tail(path: Path, lines: int = 8) -> str:
    with contextlib.suppress(OSError):
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    return ""
