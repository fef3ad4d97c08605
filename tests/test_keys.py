"""Keys: the run's own SSH key pair, and host keys pinned on first use (real sshd)."""

from __future__ import annotations

import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import paramiko
import pytest

from cloudinitd.errors import RemoteError
from cloudinitd.keys import ensure_run_keypair
from cloudinitd.remote import SshTarget, close_all, forget_host, run_step, wait_for_ssh
from cloudinitd.remote.hostkeys import fingerprint_b64
from tests.support.sshd import Host


@pytest.fixture(autouse=True)
def _close_sessions():
    yield
    close_all()


def _target(host: Host, tmp_path: Path, label: str) -> SshTarget:
    return SshTarget(host.address, host.port, host.user, host.key_path,
                     tmp_path / "known_hosts", label)  # fmt: skip


def test_creates_private_key_0600_and_public_line(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "demo"
    key, line = ensure_run_keypair(run_dir)

    assert key == run_dir / "id_ed25519"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert line.startswith("ssh-ed25519 ")
    assert line.endswith(" cloudinitd-demo")
    assert (run_dir / "id_ed25519.pub").read_text().strip() == line
    # paramiko (what Fabric uses) must be able to load it.
    loaded = paramiko.Ed25519Key.from_private_key_file(str(key))
    assert line.split()[1] == loaded.get_base64()


def test_second_call_returns_the_same_key(tmp_path: Path) -> None:
    key1, line1 = ensure_run_keypair(tmp_path)
    before = key1.read_bytes()
    key2, line2 = ensure_run_keypair(tmp_path)
    assert (key1, line1) == (key2, line2)
    assert key2.read_bytes() == before


def test_missing_pub_is_rebuilt_from_private(tmp_path: Path) -> None:
    _, line = ensure_run_keypair(tmp_path)
    (tmp_path / "id_ed25519.pub").unlink()
    _, again = ensure_run_keypair(tmp_path)
    assert again == line
    assert (tmp_path / "id_ed25519.pub").read_text().strip() == line


def test_loose_permissions_are_tightened(tmp_path: Path) -> None:
    key, _ = ensure_run_keypair(tmp_path)
    key.chmod(0o644)
    ensure_run_keypair(tmp_path)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_concurrent_callers_get_one_key(tmp_path: Path) -> None:
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: ensure_run_keypair(tmp_path), range(8)))
    assert len({line for _, line in results}) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["id_ed25519", "id_ed25519.pub"]


def test_run_key_logs_in_to_a_real_sshd(tmp_path: Path, sshd_hosts) -> None:
    (host,) = sshd_hosts(1)
    key, line = ensure_run_keypair(tmp_path / "run")
    (host.dir / "authorized_keys").write_text(line + "\n")  # only the run key now
    target = SshTarget(
        address=host.address,
        port=host.port,
        user="root",
        key_path=key,
        known_hosts=tmp_path / "run" / "known_hosts",
        label="keytest-0",
    )
    try:
        wait_for_ssh(target, timeout=15, service="keytest")
    finally:
        close_all()


# --- host keys: trust on first use, then pinned -------------------------------------------------------------------


def test_host_key_pinned_on_first_use_and_change_refused(sshd_hosts, tmp_path):
    (host,) = sshd_hosts(1)
    target = _target(host, tmp_path, label="head-0")
    wait_for_ssh(target, timeout=15, service="head")
    pinned = (tmp_path / "known_hosts").read_text().split()
    assert pinned[0] == f"[{host.address}]:{host.port}"
    assert pinned[1:3] == host.host_public_key.split()[:2]

    close_all()
    host.restart(new_host_key=True)
    with pytest.raises(RemoteError) as err:
        wait_for_ssh(target, timeout=15, service="head")
    msg = str(err.value)
    assert msg.startswith(
        f"head: ssh failed: host key for [{host.address}]:{host.port} (head-0) changed"
    )
    with pytest.raises(RemoteError, match="changed"):
        run_step(target, run="r1", service="head", index=0, step="boot", script="true",
                 env={}, log_path=tmp_path / "boot.log", timeout=30)  # fmt: skip

    # The instance was replaced on purpose: forget it and trust the new key.
    assert forget_host(tmp_path / "known_hosts", host.address, host.port) == 1
    wait_for_ssh(target, timeout=15, service="head")
    assert host.host_public_key.split()[1] in (tmp_path / "known_hosts").read_text()


def test_host_key_of_another_type_is_also_a_change(sshd_hosts, tmp_path):
    (host,) = sshd_hosts(1)
    target = _target(host, tmp_path, label="db-0")
    wait_for_ssh(target, timeout=15, service="db")
    close_all()
    host.restart(new_host_key=True, key_type="ecdsa")  # ed25519 pinned, now ecdsa
    with pytest.raises(RemoteError) as err:
        wait_for_ssh(target, timeout=15, service="db")
    new_type, new_blob = host.host_public_key.split()[:2]
    assert new_type == "ecdsa-sha2-nistp256"
    assert (
        f"changed: it now shows {new_type} {fingerprint_b64(new_blob)}, but ssh-ed25519 SHA256:"
        in str(err.value)
    )
    assert len((tmp_path / "known_hosts").read_text().splitlines()) == 1  # nothing added


def test_forget_host_keeps_other_hosts(tmp_path):
    kh = tmp_path / "known_hosts"
    kh.write_text(
        "10.0.0.1 ssh-ed25519 AAAA\n[10.0.0.1]:2222 ssh-ed25519 BBBB\n10.0.0.2 ssh-ed25519 CCCC\n"
    )
    assert forget_host(kh, "10.0.0.1", 22) == 1
    assert kh.read_text() == "[10.0.0.1]:2222 ssh-ed25519 BBBB\n10.0.0.2 ssh-ed25519 CCCC\n"
    assert stat.S_IMODE(kh.stat().st_mode) == 0o600
