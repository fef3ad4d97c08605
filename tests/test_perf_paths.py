"""The fast paths of issue 11 behave like the slow ones: batched store writes,
the SSH pool's size, connections opened ahead of need."""

from __future__ import annotations

import resource
import sqlite3
import threading

import pytest

from cloudinitd.engine.converge import ssh_pool_size
from cloudinitd.remote.session import SshTarget, close_all, prewarm, session_for
from cloudinitd.store import Store


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "home")
    yield s
    s.close()


def test_a_transaction_commits_its_writes_together_or_not_at_all(store, tmp_path):
    store.create_run("r1", "p", tmp_path / "plan.yml", {}, {})
    with pytest.raises(RuntimeError), store.transaction():
        store.set_service("r1", "web", "ready")
        store.event("r1", "ready", "ok", "web")
        raise RuntimeError("crash between two writes")
    assert store.services("r1") == {}
    assert [e for e in store.events("r1") if e.service == "web"] == []

    with store.transaction():
        store.set_service("r1", "web", "ready")
        with store.transaction():  # nested: joins the outer one
            store.event("r1", "ready", "ok", "web")
    other = sqlite3.connect(store.path)  # what another process sees
    assert other.execute("SELECT status FROM services WHERE name = 'web'").fetchone() == (
        "ready",)
    assert other.execute("SELECT count(*) FROM events WHERE service = 'web'").fetchone() == (1,)
    other.close()


def test_commits_are_not_synced_one_by_one(store):
    # WAL + synchronous=NORMAL (1): durable against a crash of the process.
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 1


def test_ssh_pool_has_a_worker_per_host_up_to_the_open_files_limit():
    assert ssh_pool_size(0) == 1
    assert ssh_pool_size(3) == 3
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)  # raised to the hard limit
    assert ssh_pool_size(500) == min(500, (soft - 50) // 3)
    assert ssh_pool_size(10**6) == (soft - 50) // 3


def test_a_prewarmed_connection_is_adopted_by_the_thread_that_needs_it(sshd_hosts, tmp_path):
    (host,) = sshd_hosts(1)
    target = SshTarget(host.address, host.port, host.user, host.key_path, tmp_path / "kh",
                       "web-0")
    try:
        assert prewarm(target, "web") is True
        assert (tmp_path / "kh").read_text().strip()  # pinned, as a first connection does
        got: list = []
        worker = threading.Thread(target=lambda: got.append(session_for(target, "web")))
        worker.start()
        worker.join()
        sess = got[0]
        assert sess.run("echo adopted")[1].strip() == "adopted"
        # Adopted once: the next thread to ask opens its own connection.
        worker = threading.Thread(target=lambda: got.append(session_for(target, "web")))
        worker.start()
        worker.join()
        assert got[1] is not sess
    finally:
        close_all()


def test_prewarm_to_a_closed_port_is_quietly_left_to_the_step(ssh_client_key, tmp_path):
    target = SshTarget("127.0.0.254", 1, "root", ssh_client_key[0], tmp_path / "kh", "gone-0")
    assert prewarm(target, "gone", connect_timeout=2) is False
