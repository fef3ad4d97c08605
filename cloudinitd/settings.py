"""The `CLOUDINITD_*` environment, read in one place.

`settings()` is a frozen `Settings` built from the environment; the same
environment gives the same (cached) object, and a changed one (a test's
monkeypatch, a service setting a variable) a new one, so no reader keeps a
stale value. Values are as given (stripped; empty means unset): each user
checks its own (a bad subnet is the bridge's error, a bad limit the loader's).
The launch-vm variables (`CLOUDINITD_IAAS_*`) are the launch-vm command's
input and stay with it (api/launchvm.py); variables cloudinitd *sets* for
scripts (`CLOUDINITD_RUN`, `_SERVICE`, `_INDEX`, `_STEP`, `_EXPORT`) are not
settings.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path

PREFIX = "CLOUDINITD_"


@dataclass(frozen=True)
class Settings:
    home: str | None = None  # CLOUDINITD_HOME: the state folder (default ~/.cloudinitd)
    image_cache: str | None = None  # CLOUDINITD_IMAGE_CACHE (default $CLOUDINITD_HOME/images)
    max_instances: str | None = None  # CLOUDINITD_MAX_INSTANCES: raises both instance limits
    bridge: str | None = None  # CLOUDINITD_BRIDGE: the local/qemu bridge (default cidbr0)
    subnet: str | None = None  # CLOUDINITD_SUBNET: its subnet (default 10.177.0.0/24)
    net_dir: str | None = None  # CLOUDINITD_NET_DIR: address leases (default /run/cloudinitd-net)
    apt_cache: str | None = None  # CLOUDINITD_APT_CACHE: the apt proxy's cache folder
    debian_mirror: str | None = None  # CLOUDINITD_DEBIAN_MIRROR: where the apt proxy fetches
    qemu_accel: str | None = None  # CLOUDINITD_QEMU_ACCEL: kvm or tcg (default: probed)
    debug: str | None = None  # CLOUDINITD_DEBUG: tracebacks for unexpected errors

    @staticmethod
    def variable(name: str) -> str:
        """The environment variable of field `name`: `home` -> CLOUDINITD_HOME."""
        return PREFIX + name.upper()

    @property
    def home_path(self) -> Path:
        return Path(self.home).expanduser() if self.home else Path.home() / ".cloudinitd"

    def image_cache_path(self, home: Path | None = None) -> Path:
        return Path(self.image_cache) if self.image_cache else (home or self.home_path) / "images"


_NAMES = tuple(f.name for f in fields(Settings))


def settings() -> Settings:
    """The settings of the environment as it is now (one object per distinct environment)."""
    values = []
    for name in _NAMES:
        value = os.environ.get(Settings.variable(name), "").strip()
        values.append(value or None)
    return _build(tuple(values))


@lru_cache(maxsize=8)
def _build(values: tuple[str | None, ...]) -> Settings:
    return Settings(*values)
