"""The private key a connection logs in with, read from the file a plan names.

Read here and handed to paramiko as a key object (`pkey`), never as a file
name: paramiko would open the name itself, after our check, and a name
swapped for a FIFO in between would block the connection forever.
"""

from __future__ import annotations

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
    `read_checked`; RemoteError when it is no file or no key paramiko can use."""
    try:
        data = read_checked(path, MAX_KEY_BYTES)
    except FileRefused as e:
        raise RemoteError(service, "ssh", f"ssh key {path} {e.problem}") from None
    # The class as paramiko's PKey.from_path picks it, from the bytes already read.
    try:
        try:
            loaded = serialization.load_ssh_private_key(data, password=None)
        except ValueError:
            loaded = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise RemoteError(service, "ssh", f"ssh key {path} is not a private key without a"
                          f" passphrase: {reason[:200]}") from None
    key_class: type[paramiko.PKey]
    if isinstance(loaded, rsa.RSAPrivateKey):
        key_class = paramiko.RSAKey
    elif isinstance(loaded, ed25519.Ed25519PrivateKey):
        key_class = paramiko.Ed25519Key
    elif isinstance(loaded, ec.EllipticCurvePrivateKey):
        key_class = paramiko.ECDSAKey
    else:
        raise RemoteError(service, "ssh", f"ssh key {path} is a"
                          f" {type(loaded).__name__.lstrip('_')}: ed25519, ECDSA or RSA keys")
    try:
        return key_class.from_private_key(io.StringIO(data.decode("ascii")))
    except (paramiko.SSHException, ValueError) as e:
        raise RemoteError(service, "ssh", f"ssh key {path}: {str(e)[:200]}") from None
