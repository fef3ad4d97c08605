"""The socket an SSH connection runs on (remote/tcp.py), on a real sshd."""

from __future__ import annotations

import socket

from cloudinitd.remote import SshTarget, close_all, session_for, wait_for_ssh
from cloudinitd.remote.tcp import QuickAckSocket, connect


def test_connections_run_on_a_socket_without_nagle_that_acks_at_once(sshd_hosts, tmp_path):
    (host,) = sshd_hosts(1)
    target = SshTarget(host.address, host.port, host.user, host.key_path,
                       tmp_path / "known_hosts", "svc-0")
    try:
        wait_for_ssh(target, timeout=15, service="svc")
        sess = session_for(target, "svc")
        sock = sess.transport.sock
        assert isinstance(sock, QuickAckSocket)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        assert sess.run("echo over-it", timeout=30) == (0, "over-it\n")
    finally:
        close_all()


def test_the_socket_reads_and_writes_as_the_plain_one(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as server:
        sock = connect("127.0.0.1", server.getsockname()[1], timeout=5)
        peer, _ = server.accept()
        with peer:
            sock.sendall(b"ping")
            assert peer.recv(4) == b"ping"
            peer.sendall(b"pong")
            assert sock.recv(4) == b"pong"
            peer.close()
            assert sock.recv(4) == b""  # end of file still reads as such
        sock.close()
        assert sock.fileno() == -1
