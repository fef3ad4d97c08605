"""remote/keyfile.py: the login key is read by cloudinitd, checked, parsed once, and works.

Each key type and file format ssh-keygen writes logs in to a real sshd; a key
file that changes is read again (and checked again) at every connection.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from cloudinitd.errors import RemoteError
from cloudinitd.remote import SshTarget, close_all, session_for, wait_for_ssh
from cloudinitd.remote.keyfile import private_key
from tests.support.hostile import within
from tests.support.sshd import SSH_KEYGEN


def keygen(path: Path, kind: str, *extra: str) -> str:
    """A key without passphrase, in place of any there; returns its public line."""
    for old in (path, path.with_name(path.name + ".pub")):
        old.unlink(missing_ok=True)
    subprocess.run([SSH_KEYGEN, "-q", "-t", kind, "-N", "", "-C", f"test-{kind}",
                    "-f", str(path), *extra], check=True)
    return path.with_name(path.name + ".pub").read_text().strip()


@pytest.mark.parametrize(("kind", "extra"), [
    ("ed25519", ()),
    ("ecdsa", ()),
    ("ecdsa", ("-m", "PEM")),
    ("rsa", ("-b", "2048")),
    ("rsa", ("-b", "2048", "-m", "PEM")),
], ids=["ed25519", "ecdsa", "ecdsa-pem", "rsa", "rsa-pem"])
def test_each_key_type_and_format_logs_in(sshd_hosts, tmp_path, kind, extra):
    (host,) = sshd_hosts(1)
    key = tmp_path / f"id_{kind}"
    pub = keygen(key, kind, *extra)
    with open(host.dir / "authorized_keys", "a") as f:  # sshd reads it at each login
        f.write(pub + "\n")
    target = SshTarget(host.address, host.port, host.user, key, tmp_path / "kh", "svc-0")
    try:
        within(60, wait_for_ssh, target, 30, "svc")
        assert session_for(target, "svc").run("echo ok")[1].strip() == "ok"
    finally:
        close_all()


def test_a_key_is_parsed_once_but_read_and_checked_every_time(tmp_path):
    key = tmp_path / "id"
    keygen(key, "rsa", "-b", "2048")
    first = private_key(key, "svc")
    assert private_key(key, "svc") is first  # the same bytes: not parsed (and checked) again
    keygen(key, "ecdsa")  # the file changed: its new key
    second = private_key(key, "svc")
    assert second is not first and second.get_name().startswith("ecdsa-")
    key.unlink()
    os.mkfifo(key)  # what was parsed before does not stand in for what is there now
    with pytest.raises(RemoteError) as caught:
        within(10, private_key, key, "svc")
    assert f"ssh key {key} is not a regular file" in str(caught.value)


def test_a_key_with_a_passphrase_is_one_clear_error(tmp_path):
    key = tmp_path / "id"
    subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "secret", "-f", str(key)],
                   check=True)
    with pytest.raises(RemoteError) as caught:
        private_key(key, "svc")
    text = str(caught.value)
    assert f"ssh key {key} is not a private key without a passphrase" in text
    assert len(text.splitlines()) == 1 and "secret" not in text
