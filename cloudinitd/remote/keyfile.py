"""The private key a connection logs in with, read from the file a plan names.

Read here and handed to paramiko as a key object (`pkey`), never as a file
name: paramiko would open the name itself, after our check, and a name
swapped for a FIFO in between would block the connection forever.
"""

from __future__ import annotations

import functools
import io
from pathlib import Path

import paramiko
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from cloudinitd.errors import RemoteError
from cloudinitd.plan.limits import MAX_KEY_BYTES, FileRefused, read_checked


def private_key(path: Path, service: str) -> paramiko.PKey:
    """The private key in `path` (ed25519, ECDSA or RSA; OpenSSH or PEM), read with
    `read_checked` at every call; RemoteError when it is no file or no key paramiko can use."""
    try:
        data = read_checked(path, MAX_KEY_BYTES)
    except FileRefused as e:
        raise RemoteError(service, "ssh", f"ssh key {path} {e.problem}") from None
    try:
        return _parsed(data)
    except _NotAKey as e:
        raise RemoteError(service, "ssh", f"ssh key {path} {e}") from None


class _NotAKey(ValueError):
    pass


@functools.lru_cache(maxsize=16)
def _parsed(data: bytes) -> paramiko.PKey:
    """The key these bytes hold, parsed once per process: loading an RSA key checks
    it (cryptography), ~0.25 s for 4096 bits here, which per connection made a
    50-host boot spend seconds of CPU on one key. Keyed by the bytes themselves:
    a changed file is a new entry."""
    try:
        try:
            loaded = serialization.load_ssh_private_key(data, password=None)
        except ValueError:
            loaded = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise _NotAKey(f"is not a private key without a passphrase: {reason[:200]}") from None
    # The class as paramiko's PKey.from_path picks it; RSA and ECDSA are built from
    # the key already loaded (not parsed and checked a second time).
    try:
        if isinstance(loaded, rsa.RSAPrivateKey):
            return paramiko.RSAKey(key=loaded)
        if isinstance(loaded, ec.EllipticCurvePrivateKey):
            return paramiko.ECDSAKey(vals=(loaded, loaded.public_key()))
        if isinstance(loaded, ed25519.Ed25519PrivateKey):
            return paramiko.Ed25519Key.from_private_key(io.StringIO(data.decode("ascii")))
    except (paramiko.SSHException, ValueError) as e:
        raise _NotAKey(f"is not a usable key: {str(e)[:200]}") from None
    raise _NotAKey(f"is a {type(loaded).__name__.lstrip('_')}: ed25519, ECDSA or RSA keys")
