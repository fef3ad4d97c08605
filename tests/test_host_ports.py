"""cloudinitd.host.ports against real sockets on 127.0.0.1."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from cloudinitd import homeshare_procs
from cloudinitd.host import ports


@pytest.fixture
def server() -> Iterator:
    """A listener on 127.0.0.1 that greets each connection with `greeting` (or says nothing)."""
    sockets: list[socket.socket] = []

    def start(greeting: bytes | None) -> int:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        s.listen(4)
        sockets.append(s)

        def serve() -> None:
            while True:
                try:
                    conn, _ = s.accept()
                except OSError:
                    return
                if greeting is not None:
                    conn.sendall(greeting)
                sockets.append(conn)

        threading.Thread(target=serve, daemon=True).start()
        return s.getsockname()[1]

    yield start
    for s in sockets:
        s.close()


def test_port_open_and_port_free_follow_a_real_listener(server) -> None:
    port = server(None)
    assert ports.port_open("127.0.0.1", port)
    assert not ports.port_free("127.0.0.1", port)
    assert homeshare_procs.listening("127.0.0.1", port)


def test_a_closed_port_is_not_open_and_is_free() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert not ports.port_open("127.0.0.1", port)
    assert ports.port_free("127.0.0.1", port)


def test_ssh_answers_only_for_an_ssh_banner(server) -> None:
    assert ports.ssh_answers("127.0.0.1", server(b"SSH-2.0-OpenSSH_9.2\r\n"), 1.0)
    assert not ports.ssh_answers("127.0.0.1", server(b"HTTP/1.1 400 Bad\r\n"), 1.0)
    assert not ports.ssh_answers("127.0.0.1", server(None), 0.2), "a bare accept is not sshd"


def test_free_port_is_bindable_and_a_foreign_address_is_refused() -> None:
    port = ports.free_port("127.0.0.1")
    assert ports.port_free("127.0.0.1", port)
    with pytest.raises(OSError):
        ports.free_port("192.0.2.1")  # TEST-NET: not on this machine
    with pytest.raises(homeshare_procs.HomeShareError, match="cannot listen on 192.0.2.1"):
        homeshare_procs.free_port("192.0.2.1")
    assert homeshare_procs.pick_port("127.0.0.1", [0, port]) == port
