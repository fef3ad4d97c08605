"""`cloudinitd serve`: the API under uvicorn and the reconcile loop beside it.

SIGTERM (or Ctrl-C) stops accepting requests, lets requests under way
finish, then gives reconcile passes under way `GRACE` seconds; what is still
running then is cut as a crash would cut it, which the engine is built for
(launch intents before cloud calls; the next start resumes them).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import uvicorn

from cloudinitd.errors import UsageError
from cloudinitd.service.actions import Api
from cloudinitd.service.app import build_app
from cloudinitd.service.reconcile import Reconciler
from cloudinitd.service.state import ServiceState
from cloudinitd.service.users import UserDirectory
from cloudinitd.store import Store

DEFAULT_LISTEN = "127.0.0.1:8445"  # also cli/serve_commands.py (kept light for --help)
GRACE = 30.0  # seconds for reconcile passes under way at shutdown
_log = logging.getLogger("cloudinitd.service")


class _Server(uvicorn.Server):
    """uvicorn re-raises the signal that stopped it once it is done, which would kill
    the process before the reconcile loop is stopped: here the signal ends `run()`
    and `serve` exits 0 after its own clean-up."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            try:
                yield
            finally:
                captured = getattr(self, "_captured_signals", None)
                if isinstance(captured, list):
                    captured.clear()


def parse_listen(text: str) -> tuple[str, int]:
    """`ADDR:PORT` (`[v6]:PORT` for IPv6); the address must be a literal IP."""
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        address = ipaddress.ip_address(host)
        number = int(port)
    except ValueError:
        raise UsageError(f"--listen takes ADDR:PORT with a literal IP address, got {text[:80]!r}"
                         ) from None
    if not sep or not 0 <= number <= 65535:
        raise UsageError(f"--listen: port must be 0-65535, got {port[:20]!r}")
    return str(address), number


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def serve(home: Path, listen: str, interval: float) -> None:
    host, port = parse_listen(listen)
    sock = bind(host, port)
    if not ipaddress.ip_address(host).is_loopback:
        print(f"cloudinitd serve: warning: listening on {host}, not loopback: requests travel"
              " in plain HTTP unless a TLS proxy is in front (README: serve)", file=sys.stderr)
    store, state = Store(home), ServiceState(home)
    reconciler = Reconciler(home, store, state, interval)
    api = Api(home=home, store=store, state=state, wake=reconciler.wake)
    app = build_app(api, UserDirectory(home))
    config = uvicorn.Config(app, log_config=None, access_log=False, server_header=False,
                            timeout_graceful_shutdown=10, limit_concurrency=64,
                            h11_max_incomplete_event_size=16 * 1024)
    server = _Server(config)
    # From now on, not only once uvicorn runs: a SIGTERM right after start stops it too.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, server.handle_exit)
    bound = sock.getsockname()
    shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    print(f"cloudinitd serve: listening on http://{shown}:{bound[1]}", flush=True)
    reconciler.start()
    try:
        server.run(sockets=[sock])
    finally:
        if not reconciler.stop(GRACE):
            _log.warning("reconcile passes still running after %ss: the next start resumes"
                         " them", GRACE)
        print("cloudinitd serve: stopped", file=sys.stderr, flush=True)
