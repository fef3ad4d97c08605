"""What a run's home share keeps in `RUN_DIR/homeshare/`: its keys, `share.json`, the lock.

Split from homeshare.py (which writes the sshd config and starts and stops
the server): the files (written private through host.files; one starter at a
time through host.locks), and the share read back from them without starting
anything (`recorded_home_share`, what rendering and `diff` hand to templates
as data).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloudinitd.host import locks
from cloudinitd.host.files import write_private as write_private  # the share's files use it

SUBDIR = "homeshare"


@dataclass
class HomeShare:
    """How a VM reaches the home: `sshfs -p PORT USER@HOST:DIR` with `key`, pinning `known_host`."""

    host: str
    port: int
    user: str
    dir: str
    key: str = field(repr=False)  # private key text: only ever rendered into the VM's script
    known_host: str = ""  # `[host]:port ssh-ed25519 AAAA...` for the VM's known_hosts
    read_only: bool = False  # the share refuses writes
    confined: bool = False  # chrooted to `dir` (False only when cloudinitd is not root)


def share_dir(run_dir: Path) -> Path:
    d = Path(run_dir) / SUBDIR
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    d.chmod(0o700)
    return d


def ensure_key(path: Path, comment: str) -> tuple[str, str]:
    """An ed25519 key at `path` (made once); (private text, public line)."""
    if not path.exists():
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        write_private(path, pem)
    return read_key(path, comment)


def read_key(path: Path, comment: str) -> tuple[str, str]:
    """(private text, public line) of the key at `path`."""
    private = path.read_bytes()
    key = serialization.load_ssh_private_key(private, password=None)
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return private.decode(), f"{public.decode()} {comment}"


@contextlib.contextmanager
def locked(share_dir: Path) -> Iterator[None]:
    """One starter per run at a time (threads configuring replicas, other processes)."""
    with locks.exclusive(share_dir / ".lock"):
        yield


def read_state(share_dir: Path) -> dict:
    try:
        return json.loads((share_dir / "share.json").read_text())
    except (OSError, ValueError):
        return {}


def make_share(host: str, port: int, user: str, home_dir: str, private: str, host_public: str,
           read_only: bool, confined: bool) -> HomeShare:
    host_field = host if port == 22 else f"[{host}]:{port}"
    key_type, key_b64 = host_public.split()[:2]
    return HomeShare(host=host, port=port, user=user, dir=home_dir, key=private,
                     known_host=f"{host_field} {key_type} {key_b64}", read_only=read_only,
                     confined=confined)


def recorded_home_share(run_dir: Path) -> HomeShare | None:
    """The run's share as it was last started, read from its folder: starts nothing, and
    the same data `ensure_home_share` gave then (so rendered inputs hash the same).
    None when it never started."""
    d = Path(run_dir) / SUBDIR
    state = read_state(d)
    try:
        private, _ = read_key(d / "home_key", "")
        _, host_public = read_key(d / "ssh_host_ed25519_key", "cloudinitd-home-share")
        return make_share(state["host"], int(state["port"]), state["user"], state["dir"], private,
                      host_public, bool(state["read_only"]), bool(state["confined"]))
    except (OSError, KeyError, ValueError, TypeError):
        return None


def share_info(run_dir: Path) -> dict:
    """What the run's share serves (no secrets): host, port, user, dir, read_only, confined."""
    state = read_state(Path(run_dir) / SUBDIR)
    state.pop("pid", None)
    return state


def recorded_share(run_dir: Path) -> dict | None:
    """`recorded_home_share` as template data (what `diff` renders `home` with); None if
    the run never had a share. Nothing is started or written."""
    share = recorded_home_share(run_dir)
    return asdict(share) if share is not None else None
