"""Host-key pinning called directly: the refusal must not depend on paramiko's own check.

paramiko (3.x) raises BadHostKeyException itself for a changed key of the
same type, so the end-to-end tests in test_keys.py never reach TofuPolicy's
refusal for that case. Here the policy is called the way paramiko calls it,
with real keys made by ssh-keygen.
"""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import paramiko
import pytest

from cloudinitd.remote.hostkeys import (
    HostKeyChanged,
    TofuPolicy,
    fingerprint,
    fingerprint_b64,
    forget_host,
    generate_host_key,
    known_hosts_name,
    pin_host,
)


def _key(tmp_path: Path, key_type: str, name: str) -> paramiko.PKey:
    path = tmp_path / f"{name}-{key_type}"
    subprocess.run(["ssh-keygen", "-q", "-t", key_type, "-N", "", "-f", str(path)], check=True)
    return paramiko.PKey.from_path(path)


def _line(host: str, key: paramiko.PKey) -> str:
    return f"{host} {key.get_name()} {key.get_base64()}\n"


@pytest.fixture
def keys(tmp_path):
    return {
        "ed": _key(tmp_path, "ed25519", "a"),
        "ed2": _key(tmp_path, "ed25519", "b"),
        "ecdsa": _key(tmp_path, "ecdsa", "c"),
    }


def test_first_key_is_pinned_private_and_once(tmp_path, keys):
    kh = tmp_path / "run" / "known_hosts"
    policy = TofuPolicy(kh, label="db-0")
    policy.missing_host_key(None, "[127.0.0.5]:2200", keys["ed"])
    assert kh.read_text() == _line("[127.0.0.5]:2200", keys["ed"])
    assert stat.S_IMODE(kh.stat().st_mode) == 0o600
    # The same key again (another thread pinned it meanwhile): accepted, not written twice.
    policy.missing_host_key(None, "[127.0.0.5]:2200", keys["ed"])
    assert kh.read_text() == _line("[127.0.0.5]:2200", keys["ed"])


@pytest.mark.parametrize("shown", ["ecdsa", "ed2"], ids=["other-type", "same-type"])
def test_a_different_key_is_refused_whatever_its_type(tmp_path, keys, shown):
    kh = tmp_path / "known_hosts"
    kh.write_text(_line("10.0.0.1", keys["ed"]))
    with pytest.raises(HostKeyChanged) as err:
        TofuPolicy(kh, label="web-1").missing_host_key(None, "10.0.0.1", keys[shown])
    key = keys[shown]
    assert str(err.value) == (
        f"host key for 10.0.0.1 (web-1) changed: it now shows {key.get_name()} "
        f"{fingerprint(key)}, but ssh-ed25519 {fingerprint(keys['ed'])} is pinned "
        "for it in this run. Refusing to connect: another machine may be answering at this "
        "address. If the instance was replaced on purpose, forget its old key first."
    )
    assert kh.read_text() == _line("10.0.0.1", keys["ed"])  # nothing added


def test_a_neighbouring_address_is_another_host(tmp_path, keys):
    kh = tmp_path / "known_hosts"
    kh.write_text(_line("10.0.0.10", keys["ed"]) + _line("[10.0.0.1]:2222", keys["ed"]))
    TofuPolicy(kh).missing_host_key(None, "10.0.0.1", keys["ecdsa"])  # no pin of its own
    assert kh.read_text().splitlines()[-1] == _line("10.0.0.1", keys["ecdsa"]).strip()


def test_pins_in_a_comma_list_and_comments(tmp_path, keys):
    kh = tmp_path / "known_hosts"
    # A commented-out line is no pin, even one that names the host after a comma.
    kh.write_text("#10.0.0.9,10.0.0.1 " + _line("", keys["ecdsa"]).lstrip()
                  + _line("10.0.0.9,10.0.0.1", keys["ed"]))
    with pytest.raises(HostKeyChanged) as err:
        TofuPolicy(kh).missing_host_key(None, "10.0.0.1", keys["ecdsa"])
    assert str(err.value).startswith("host key for 10.0.0.1 changed: it now shows ecdsa")


def test_forget_host_drops_only_that_address(tmp_path, keys):
    kh = tmp_path / "known_hosts"
    lines = [_line(h, keys["ed"]) for h in
             ("10.0.0.1", "10.0.0.10", "10.0.0.100", "110.0.0.1", "[10.0.0.1]:2222",
              "10.0.0.11,10.0.0.1")]
    kh.write_text("".join(lines))
    assert forget_host(kh, "10.0.0.1") == 2
    assert kh.read_text() == "".join(lines[1:5])
    assert stat.S_IMODE(kh.stat().st_mode) == 0o600
    assert forget_host(kh, "10.0.0.1") == 0
    assert forget_host(kh, "10.0.0.1", 2222) == 1
    assert kh.read_text() == "".join(lines[1:4])
    assert forget_host(tmp_path / "none", "10.0.0.1") == 0


def test_known_hosts_name_and_fingerprint_match_openssh(tmp_path, keys):
    assert known_hosts_name("10.0.0.1", 22) == "10.0.0.1"
    assert known_hosts_name("10.0.0.1", 2222) == "[10.0.0.1]:2222"
    pub = tmp_path / "a-ed25519.pub"
    out = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", str(pub)],
                         capture_output=True, text=True, check=True).stdout
    assert out.split()[1] == fingerprint(keys["ed"]) == fingerprint_b64(keys["ed"].get_base64())


def test_generate_host_key_makes_a_fresh_ed25519_pair_openssh_reads(tmp_path):
    private, public = generate_host_key()
    again = generate_host_key()
    assert private.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert public.startswith("ssh-ed25519 ") and len(public.split()) == 2
    assert again[0] != private and again[1] != public  # fresh each time
    path = tmp_path / "host_key"
    path.write_text(private)
    path.chmod(0o600)
    derived = subprocess.run(["ssh-keygen", "-y", "-f", str(path)], capture_output=True,
                             text=True, check=True).stdout.split()
    assert derived[:2] == public.split()  # the public half is the private key's


def test_pin_host_replaces_that_hosts_pins_and_keeps_every_other(tmp_path, keys):
    kh = tmp_path / "run" / "known_hosts"  # the folder does not exist yet
    others = [_line(h, keys["ed"]) for h in ("10.0.0.10", "[10.0.0.1]:2222", "110.0.0.1")]
    pin_host(kh, "10.0.0.1", 22, f"ssh-ed25519 {keys['ed'].get_base64()} made-here")
    assert kh.read_text() == _line("10.0.0.1", keys["ed"])  # the comment is not kept
    assert stat.S_IMODE(kh.stat().st_mode) == 0o600
    kh.write_text("".join(others) + _line("10.0.0.1", keys["ed"])
                  + _line("10.0.0.9,10.0.0.1", keys["ed2"]))
    # A new instance at the same address, with the key we made for it.
    pin_host(kh, "10.0.0.1", 22, f"{keys['ecdsa'].get_name()} {keys['ecdsa'].get_base64()}")
    assert kh.read_text() == "".join(others) + _line("10.0.0.1", keys["ecdsa"])
    # Only the new key is accepted from now on, whatever the type the host shows.
    TofuPolicy(kh).missing_host_key(None, "10.0.0.1", keys["ecdsa"])
    with pytest.raises(HostKeyChanged):
        TofuPolicy(kh).missing_host_key(None, "10.0.0.1", keys["ed"])
    # The same pin again changes nothing; a port other than 22 is its own host field.
    before = kh.stat().st_ino  # a write replaces the file (temp file + rename)
    pin_host(kh, "10.0.0.1", 22, f"{keys['ecdsa'].get_name()} {keys['ecdsa'].get_base64()}")
    assert kh.stat().st_ino == before
    pin_host(kh, "10.0.0.1", 2222, f"ssh-ed25519 {keys['ed2'].get_base64()}")
    assert kh.read_text().splitlines() == [
        _line("10.0.0.10", keys["ed"]).strip(), _line("110.0.0.1", keys["ed"]).strip(),
        _line("10.0.0.1", keys["ecdsa"]).strip(), _line("[10.0.0.1]:2222", keys["ed2"]).strip()]
