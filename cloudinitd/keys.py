"""The SSH key pair made for one run (`runs/<run>/id_ed25519`).

Each run gets its own key so that terminating or cleaning a run leaves no
long-lived credential behind on the instances it made, and so that no user
key is ever copied to a cloud. Generated in-process with `cryptography`
(already a paramiko dependency) so no `ssh-keygen` binary is needed.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloudinitd.host.files import write_private

KEY_NAME = "id_ed25519"


def ensure_run_keypair(run_dir: Path) -> tuple[Path, str]:
    """Create `run_dir/id_ed25519` (0600) and its `.pub` once; return (key path, public line).

    Safe to call again (returns the existing key) and safe against two
    processes racing: the private key is claimed with an atomic link, so
    exactly one of them wins and both return the same key.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    private = run_dir / KEY_NAME
    public = run_dir / f"{KEY_NAME}.pub"
    comment = f"cloudinitd-{run_dir.name}"

    if not private.exists():
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        tmp = _write_temp(run_dir, pem, 0o600)
        try:
            os.link(tmp, private)  # fails if another process won the race
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)

    # Permissions may have been loosened by hand; ssh refuses such keys.
    if private.stat().st_mode & 0o077:
        private.chmod(0o600)

    line = _public_line(private, comment)
    if not public.exists() or public.read_text().strip() != line:
        write_private(public, line + "\n", mode=0o644)
    return private, line


def _write_temp(directory: Path, data: bytes, mode: int) -> Path:
    """A uniquely named temp file (mkstemp creates it 0600) in `directory`."""
    fd, name = tempfile.mkstemp(prefix=f".{KEY_NAME}.", suffix=".tmp", dir=directory)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(name, mode)
    return Path(name)


def _public_line(private: Path, comment: str) -> str:
    """The OpenSSH public key line, always derived from the private key (the source of truth)."""
    key = serialization.load_ssh_private_key(private.read_bytes(), password=None)
    pub = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return f"{pub.decode()} {comment}"
