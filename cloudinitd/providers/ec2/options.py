"""The options of a `provider: ec2` cloud entry, checked once, with plain defaults.

A cloud entry names credentials only by reference (a profile, or the NAMES
of environment variables): the secret itself never appears in a plan, the
catalog, the store or a log.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from cloudinitd.errors import PlanError
from cloudinitd.images.naming import Storage, parse_storage
from cloudinitd.plan.model import CloudSpec

# `size:` of a plan -> EC2 instance type, unless the cloud maps it itself.
DEFAULT_INSTANCE_TYPES = {
    "nano": "t3.nano",
    "micro": "t3.micro",
    "tiny": "t3.micro",
    "small": "t3.small",
    "medium": "t3.medium",
    "large": "t3.large",
    "xlarge": "t3.xlarge",
}
DEFAULT_SIZE = "small"
DEFAULT_REGION = "us-east-1"
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
KNOWN = {
    "endpoint", "region", "credentials", "key_name", "security_groups", "subnet",
    "user_data", "address", "instance_types", "images", "spot", "max_attempts",
    "connect_timeout", "read_timeout", "poll_interval", "storage",
}  # fmt: skip


@dataclass(frozen=True)
class Credentials:
    """Where the keys come from. Holds names only, never key material."""

    profile: str | None = None
    access_key_env: str | None = None
    secret_key_env: str | None = None
    session_token_env: str | None = None

    def describe(self) -> str:
        if self.profile:
            return f"profile {self.profile}"
        if self.access_key_env:
            return f"environment {self.access_key_env}/{self.secret_key_env}"
        return "default AWS credential chain"


@dataclass(frozen=True)
class Ec2Options:
    cloud: str
    endpoint: str | None = None
    region: str | None = None
    credentials: Credentials = Credentials()
    key_name: str | None = None
    security_groups: tuple[str, ...] = ()
    subnet: str | None = None
    user_data: str | None = None
    address: str | None = None  # "public" / "private" / None = public if any
    instance_types: dict[str, str] = field(default_factory=dict)
    images: dict[str, str] = field(default_factory=dict)
    spot: dict[str, Any] | None = None
    max_attempts: int = 3
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    poll_interval: float = 2.0
    storage: Storage = Storage(endpoint=None)  # where `image stage` uploads (naming.py)

    def instance_type(self, size: str | None) -> str:
        size = size or DEFAULT_SIZE
        return self.instance_types.get(size) or DEFAULT_INSTANCE_TYPES.get(size) or size

    def image_id(self, image: str | None) -> str:
        if not image:
            raise PlanError(
                f"cloud {self.cloud!r}: the service names no image (an AMI id, or a key of `images:`)"
            )
        return self.images.get(image, image)


def parse_options(cloud: CloudSpec) -> Ec2Options:
    """Check a cloud entry's options; PlanError at the entry's position when wrong."""
    o = cloud.options

    def fail(message: str) -> PlanError:
        pos = cloud.pos
        return PlanError(
            f"cloud {cloud.name!r}: {message}",
            file=pos.file if pos else None,
            line=pos.line if pos else None,
        )

    unknown = sorted(set(o) - KNOWN)
    if unknown:
        raise fail(
            f"unknown ec2 option(s) {', '.join(unknown)} (known: {', '.join(sorted(KNOWN))})"
        )
    address = o.get("address")
    if address not in (None, "public", "private"):
        raise fail(f"address must be public or private, not {address!r}")
    for key in ("instance_types", "images"):
        value = o.get(key, {})
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise fail(f"{key} must map names to strings")
    groups = o.get("security_groups", [])
    if isinstance(groups, str):
        groups = [groups]
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        raise fail("security_groups must be a list of group names or sg- ids")
    return Ec2Options(
        cloud=cloud.name,
        endpoint=o.get("endpoint"),
        region=o.get("region"),
        credentials=_credentials(o.get("credentials"), fail),
        key_name=o.get("key_name"),
        security_groups=tuple(groups),
        subnet=o.get("subnet"),
        user_data=o.get("user_data"),
        address=address,
        instance_types={str(k): v for k, v in o.get("instance_types", {}).items()},
        images={str(k): v for k, v in o.get("images", {}).items()},
        spot=o.get("spot"),
        max_attempts=int(o.get("max_attempts", 3)),
        connect_timeout=float(o.get("connect_timeout", 10)),
        read_timeout=float(o.get("read_timeout", 60)),
        poll_interval=float(o.get("poll_interval", 2)),
        storage=parse_storage(o.get("storage"), o.get("endpoint"), fail),
    )


def _credentials(value: Any, fail: Any) -> Credentials:
    if value is None:
        return Credentials()
    if not isinstance(value, dict):
        raise fail(
            "credentials must be {profile: NAME} or {access_key_env: VAR, secret_key_env: VAR}"
        )
    allowed = {"profile", "access_key_env", "secret_key_env", "session_token_env"}
    extra = sorted(set(value) - allowed)
    if extra:
        raise fail(
            f"credentials: unknown key(s) {', '.join(extra)}; name a profile or the environment "
            "variables holding the keys (access_key_env, secret_key_env), never the keys themselves"
        )
    if "profile" in value and len(value) > 1:
        raise fail("credentials: give either profile or access_key_env/secret_key_env, not both")
    for key in ("access_key_env", "secret_key_env", "session_token_env"):
        name = value.get(key)
        if name is not None and not (isinstance(name, str) and ENV_NAME.match(name)):
            # Do not echo the value: it may be a pasted secret.
            raise fail(f"credentials.{key} must be the NAME of an environment variable")
    if ("access_key_env" in value) != ("secret_key_env" in value):
        raise fail("credentials: access_key_env and secret_key_env go together")
    return Credentials(
        profile=value.get("profile"),
        access_key_env=value.get("access_key_env"),
        secret_key_env=value.get("secret_key_env"),
        session_token_env=value.get("session_token_env"),
    )
