"""Host keys: made here and pinned before boot where we can, else trust on first use.

Every run has its own known_hosts file. For instances a provider creates on
this machine (`local`, `qemu`) the provider makes the host key here
(`generate_host_key`), puts it into the instance before it boots, and the
engine pins the public half (`pin_host`) before the first connection: a
neighbour that takes over the address first shows another key and is
refused. Where the key cannot be chosen (`ec2`, `static`) the first key a
host shows is written there; any later connection must show that same key.
What pinning buys then is that a machine swapped in under the same address
later in the run (or a man in the middle) is refused, not trusted.
When the engine itself replaces an instance it calls `forget_host` first.

The file is shared by the threads and processes working on one run, so it
is only ever appended to (one line per host) under an exclusive flock.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloudinitd.host import locks
from cloudinitd.host.files import write_private

_thread_lock = threading.Lock()


class HostKeyChanged(Exception):
    """The host showed a key other than the one pinned for it in this run."""


def known_hosts_name(address: str, port: int) -> str:
    """The host field OpenSSH (and paramiko) use: `[addr]:port` unless port 22."""
    return address if port == 22 else f"[{address}]:{port}"


def fingerprint(key: paramiko.PKey) -> str:
    """SHA256 fingerprint as `ssh-keygen -l` prints it."""
    return fingerprint_b64(key.get_base64())


def fingerprint_b64(blob: str) -> str:
    """Fingerprint of a key given as the base64 field of a known_hosts line."""
    digest = hashlib.sha256(base64.b64decode(blob)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


@contextlib.contextmanager
def _locked(known_hosts: Path) -> Iterator[None]:
    known_hosts.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    lock_path = known_hosts.with_name(known_hosts.name + ".lock")
    with _thread_lock, locks.exclusive(lock_path):
        yield


def _entries(known_hosts: Path, name: str) -> list[tuple[str, str]]:
    """(key type, base64 key) pinned for host field `name`."""
    found = []
    try:
        text = known_hosts.read_text()
    except FileNotFoundError:
        return found
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and not line.startswith("#") and name in parts[0].split(","):
            found.append((parts[1], parts[2]))
    return found


class TofuPolicy(paramiko.MissingHostKeyPolicy):
    """Pin the first key of a host in the run's known_hosts; refuse any other.

    paramiko calls this when its loaded host keys have no key for the host
    (paramiko 3: no key *of the type offered*, so a switch of key type lands
    here too). The file is re-read under the lock, because another thread may
    have pinned the host since this connection loaded it; any pin counts.
    """

    def __init__(self, known_hosts: Path, label: str = ""):
        self.known_hosts = Path(known_hosts)
        self.label = label

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        with _locked(self.known_hosts):
            pinned = _entries(self.known_hosts, hostname)
            if (key.get_name(), key.get_base64()) in pinned:
                return  # another thread pinned this very key meanwhile
            if pinned:
                shown = (key.get_name(), key.get_base64())
                raise HostKeyChanged(changed_message(hostname, self.label, shown, pinned[0]))
            fd = os.open(self.known_hosts, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(fd, "a") as f:
                f.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")


def _who(hostname: str, label: str) -> str:
    return f"{hostname} ({label})" if label else hostname


def changed_message(
    hostname: str, label: str, shown: tuple[str, str], pinned: tuple[str, str]
) -> str:
    """The one wording of a changed host key; shown/pinned are (key type, base64 blob)."""
    return (
        f"host key for {_who(hostname, label)} changed: it now shows {shown[0]} "
        f"{fingerprint_b64(shown[1])}, but {pinned[0]} {fingerprint_b64(pinned[1])} is pinned "
        "for it in this run. Refusing to connect: another machine may be answering at "
        "this address. If the instance was replaced on purpose, forget its old key first."
    )


def bad_host_key_message(hostname: str, label: str, err: paramiko.BadHostKeyException) -> str:
    """paramiko's own mismatch (same key type, or any type in paramiko >= 4)."""
    return changed_message(
        hostname,
        label,
        (err.key.get_name(), err.key.get_base64()),
        (err.expected_key.get_name(), err.expected_key.get_base64()),
    )


def forget_host(known_hosts: Path, address: str, port: int = 22) -> int:
    """Drop the pinned key(s) of `address:port` (e.g. when its instance was replaced).

    Returns how many lines were removed. Other hosts' pins are kept.
    """
    known_hosts = Path(known_hosts)
    name = known_hosts_name(address, port)
    with _locked(known_hosts):
        try:
            lines = known_hosts.read_text().splitlines(keepends=True)
        except FileNotFoundError:
            return 0
        kept = [ln for ln in lines if not (ln.split() and name in ln.split()[0].split(","))]
        removed = len(lines) - len(kept)
        if removed:
            write_private(known_hosts, "".join(kept))
    return removed


def generate_host_key() -> tuple[str, str]:
    """A fresh ed25519 host key: (private key in OpenSSH PEM, public `ssh-ed25519 AAAA...`)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode()
    return private, public


def pin_host(known_hosts: Path, address: str, port: int, public_key: str) -> None:
    """Pin `public_key` (`TYPE BASE64 [comment]`) for `address:port`, replacing any older pin.

    Called before the first connection to an instance whose key we made: the
    address may have belonged to an earlier instance of the run, whose pin
    must not outlive it.
    """
    known_hosts = Path(known_hosts)
    name = known_hosts_name(address, port)
    key_type, blob = public_key.split()[:2]
    with _locked(known_hosts):
        try:
            lines = known_hosts.read_text().splitlines(keepends=True)
        except FileNotFoundError:
            lines = []
        kept = [ln for ln in lines if not (ln.split() and name in ln.split()[0].split(","))]
        kept.append(f"{name} {key_type} {blob}\n")
        if kept == lines:
            return
        write_private(known_hosts, "".join(kept))
