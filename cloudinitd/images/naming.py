"""Where a staged image lives: cumulus://HOST/BUCKET/PREFIX/CANONICAL_ID/NAME.

Nimbus's Cumulus (and the ExTENCI tools) keep a user's images in an
S3-compatible store under `BUCKET/PREFIX/CANONICAL_ID/NAME`, by default
bucket `Repo` and prefix `VMS`. A cloud entry may override each part:

    hotel:
      provider: ec2
      endpoint: https://svc.uc.futuregrid.org:8444
      credentials: {profile: hotel}
      storage: {endpoint: https://svc.uc.futuregrid.org:8888, bucket: Repo,
                prefix: VMS, canonical_id: 4a2c...}

The store's credentials are the cloud's own credential references.
"""

from __future__ import annotations

import getpass
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

DEFAULT_BUCKET = "Repo"
DEFAULT_PREFIX = "VMS"
DEFAULT_PART_SIZE = 8 * 1024 * 1024  # boto3's default multipart chunk size
MIN_PART_SIZE = 5 * 1024 * 1024  # S3's smallest part (all but the last)
IMAGE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._()/-]{0,127}$")
STORAGE_KEYS = ("endpoint", "bucket", "prefix", "canonical_id", "part_size")

# The `storage:` key of an ec2 cloud entry (declared in cloudinitd/kinds/ec2.py).
STORAGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "x-expect": "{endpoint: URL, bucket: NAME, prefix: PATH, canonical_id: ID, part_size: BYTES}",
    "properties": {
        "endpoint": {"type": "string", "x-expect": "a URL like https://host[:port]"},
        "bucket": {"type": "string", "pattern": r"^[A-Za-z0-9._-]{1,255}$",
                   "x-expect": "a bucket name"},
        "prefix": {"type": "string", "pattern": r"^[A-Za-z0-9._/-]{0,255}$",
                   "x-expect": "a key prefix"},
        "canonical_id": {"type": "string", "pattern": r"^[A-Za-z0-9._@-]{1,128}$",
                         "x-expect": "your canonical user id on the store"},
        "part_size": {"type": "integer", "minimum": MIN_PART_SIZE,
                      "x-expect": f"bytes per upload part (>= {MIN_PART_SIZE})"},
    },
    "additionalProperties": False,
}


@dataclass(frozen=True)
class Storage:
    """The S3-compatible store of one cloud and where its user's images go."""

    endpoint: str | None
    bucket: str = DEFAULT_BUCKET
    prefix: str = DEFAULT_PREFIX
    canonical_id: str = ""
    part_size: int = DEFAULT_PART_SIZE

    def key(self, name: str) -> str:
        parts = [p.strip("/") for p in (self.prefix, self.canonical_id, name) if p.strip("/")]
        return "/".join(parts)

    def location(self, name: str) -> str:
        """RegisterImage's ImageLocation: BUCKET/KEY, as EC2 names an object in S3."""
        return f"{self.bucket}/{self.key(name)}"

    def url(self, name: str) -> str:
        host = urlparse(self.endpoint).netloc if self.endpoint else "s3.amazonaws.com"
        return f"cumulus://{host}/{self.bucket}/{self.key(name)}"


def parse_storage(value: Any, ec2_endpoint: str | None, fail: Any) -> Storage:
    """The `storage:` option (or its absence) -> Storage; `fail(msg)` makes the error."""
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise fail("storage must be a mapping {endpoint, bucket, prefix, canonical_id}")
    unknown = sorted(set(value) - set(STORAGE_KEYS))
    if unknown:
        raise fail(f"storage: unknown key(s) {', '.join(unknown)} "
                   f"(known: {', '.join(STORAGE_KEYS)})")
    for key in ("endpoint", "bucket", "prefix", "canonical_id"):
        if key in value and not isinstance(value[key], str | int):
            raise fail(f"storage.{key} must be text")
    part_size = value.get("part_size", DEFAULT_PART_SIZE)
    if not isinstance(part_size, int) or part_size < MIN_PART_SIZE:
        raise fail(f"storage.part_size must be a whole number of bytes >= {MIN_PART_SIZE}")
    return Storage(
        # Nimbus serves EC2 and Cumulus on different ports; moto and many private
        # clouds serve both on one: the EC2 endpoint is the default.
        endpoint=value.get("endpoint") or ec2_endpoint,
        bucket=str(value.get("bucket", DEFAULT_BUCKET)),
        prefix=str(value.get("prefix", DEFAULT_PREFIX)),
        # Cumulus admins hand out the canonical id; without one, the login name
        # keeps each user's images apart.
        canonical_id=str(value.get("canonical_id") or getpass.getuser()),
        part_size=part_size,
    )


def check_name(name: str) -> str:
    from cloudinitd.errors import UsageError

    if not IMAGE_NAME.match(name) or ".." in name:
        raise UsageError(f"image name {name!r}: use letters, digits and . _ - ( ) / "
                         "(at most 128, starting with a letter or digit)")
    return name


def name_from_url(name: str) -> str:
    """A full cumulus:// URL or just the name part -> the name (the last path part)."""
    if name.startswith("cumulus://"):
        return name.rstrip("/").rsplit("/", 1)[-1]
    return name
