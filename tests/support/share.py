"""A client of the run's home share, as a VM uses it: the pinned host key and the run's key."""

from __future__ import annotations

import base64
import io
from typing import Any

import paramiko


def share_client(share: Any, known_host: str | None = None) -> paramiko.SSHClient:
    """Connected; knows only the share's pinned host key (or `known_host`) and its user key."""
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    field, key_type, key_b64 = (known_host or share.known_host).split()
    host_key = paramiko.PKey.from_type_string(key_type, base64.b64decode(key_b64))
    client.get_host_keys().add(field, key_type, host_key)
    client.connect(
        share.host,
        port=share.port,
        username=share.user,
        pkey=paramiko.Ed25519Key.from_private_key(io.StringIO(share.key)),
        look_for_keys=False,
        allow_agent=False,
        timeout=10,
    )
    return client
