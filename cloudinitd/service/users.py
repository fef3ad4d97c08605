"""Access keys for `cloudinitd serve`: `$CLOUDINITD_HOME/users.json`, mode 0600.

The file is apart from the run store on purpose: it holds the only secrets
cloudinitd keeps (SigV4 needs the secret itself to recompute a signature).
A secret is printed once, by `user add`, and never again: not by `user
list`, not in a log, not in an API answer.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cloudinitd.errors import UsageError, one_line
from cloudinitd.host import locks
from cloudinitd.host.files import write_private

USERS_FILE = "users.json"
USER_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")
USER_NAME_RULE = "a lower-case letter, then lower-case letters, digits, '_' or '-' (at most 32)"
KEY_PREFIX = "AKCI"  # 20 characters like AWS's AKIA... keys; CI for cloudinitd


def users_path(home: Path) -> Path:
    return Path(home) / USERS_FILE


def check_user_name(name: str) -> str:
    if not isinstance(name, str) or not USER_NAME.fullmatch(name):
        shown = name if len(name) <= 40 else f"{name[:40]}..."
        raise UsageError(one_line(f"bad user name {shown!r}: use {USER_NAME_RULE}"))
    return name


def _new_access_key() -> str:
    return KEY_PREFIX + base64.b32encode(secrets.token_bytes(10)).decode()[:16]


def _new_secret() -> str:
    return base64.b64encode(secrets.token_bytes(30)).decode()  # 40 characters


def _read(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: cannot read the users file ({type(exc).__name__})") from None
    users = data.get("users") if isinstance(data, dict) else None
    if not isinstance(users, list):
        raise UsageError(f"{path}: not a cloudinitd users file")
    return users


def _write(path: Path, users: list[dict[str, Any]]) -> None:
    """Whole file, atomically, created 0600 (never readable by others, not even briefly)."""
    write_private(path, json.dumps({"version": 1, "users": users}, indent=1), sync=True)


@contextlib.contextmanager
def _locked(home: Path) -> Iterator[Path]:
    """One writer at a time (two `user add` at once must not lose one)."""
    home = Path(home)
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    with locks.exclusive(home / ".users.lock"):
        yield users_path(home)


def add_user(home: Path, name: str) -> dict[str, str]:
    """A new user and key pair; the only time the secret leaves this module."""
    check_user_name(name)
    with _locked(home) as path:
        users = _read(path)
        if any(u.get("name") == name for u in users):
            raise UsageError(f"user {name!r} already exists (remove it first to get new keys)")
        user = {"name": name, "access_key": _new_access_key(), "secret_key": _new_secret(),
                "created": time.time()}
        users.append(user)
        _write(path, users)
    return {"name": name, "access_key": user["access_key"], "secret_key": user["secret_key"]}


def list_users(home: Path) -> list[dict[str, Any]]:
    """Names, access keys and creation times: never a secret."""
    return [{"name": u["name"], "access_key": u["access_key"], "created": u.get("created")}
            for u in _read(users_path(home))]


def remove_user(home: Path, name: str) -> None:
    check_user_name(name)
    with _locked(home) as path:
        users = _read(path)
        kept = [u for u in users if u.get("name") != name]
        if len(kept) == len(users):
            raise UsageError(f"no user named {name!r} (see `cloudinitd user list`)")
        _write(path, kept)


class UserDirectory:
    """Access key -> (user, secret) for the server, re-read when the file changes.

    `user add` and `user remove` take effect on a running `serve` at the next request.
    """

    def __init__(self, home: Path):
        self.path = users_path(home)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._by_key: dict[str, tuple[str, str]] = {}

    def _refresh(self) -> None:
        try:
            st = os.stat(self.path)
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            stamp = None
        if stamp == self._stamp:
            return
        users = _read(self.path) if stamp else []
        self._by_key = {u["access_key"]: (u["name"], u["secret_key"]) for u in users}
        self._stamp = stamp

    def lookup(self, access_key: str) -> tuple[str, str] | None:
        with self._lock:
            self._refresh()
            return self._by_key.get(access_key)

    def secret_for(self, access_key: str) -> str | None:
        found = self.lookup(access_key)
        return found[1] if found else None

    def user_for(self, access_key: str) -> str | None:
        found = self.lookup(access_key)
        return found[0] if found else None
