"""`local`: LXC system containers on this machine; `cloud: local` needs no entry."""

from __future__ import annotations

from cloudinitd.bytesize import DISK_LIMITS
from cloudinitd.kinds.base import Declaration, text

DECLARATION = Declaration(
    kind="local",
    doc="LXC system containers on this machine",
    implicit_cloud=True,
    builds_images=True,
    user_data="script",
    default_cloud=True,
    cloud_options={
        "lxcpath": text("an absolute directory path", r"^/[^\x00]*$"),
        # Each instance's own filesystem (providers/local/disk.py).
        "disk": {
            "type": "string",
            "format": "disk-size",
            "x-expect": f"a disk size {DISK_LIMITS}, like 8G or 512M (binary units)",
        },
    },
)
