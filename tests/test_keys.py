"""The run's own SSH key pair."""

from __future__ import annotations

import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import paramiko

from cloudinitd.keys import ensure_run_keypair
from cloudinitd.remote import SshTarget, close_all, wait_for_ssh


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
