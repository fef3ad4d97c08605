"""The options of a `provider: ec2` cloud entry, checked once, with plain defaults.

A cloud entry names credentials only by reference (a profile, or the NAMES
of environment variables): the secret itself never appears in a plan, the
catalog, the store or a log.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cloudinitd.cloudspec import check_options
from cloudinitd.errors import PlanError
from cloudinitd.images.naming import Storage, parse_storage
from cloudinitd.plan import userdata
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
    user_data: bytes | None = None  # the cloud's default, as bytes (plan/userdata.py)
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


def _user_data(o: dict[str, Any], fail: Callable[[str], PlanError]) -> bytes | None:
    """The entry's `user_data` (text) or `user_data_base64` (any bytes), as bytes."""
    if userdata.TEXT_KEY in o and userdata.BASE64_KEY in o:
        raise fail(userdata.BOTH)
    try:
        _, data = userdata.given(o)
    except userdata.UserDataError as exc:
        raise fail(str(exc)) from None
    if not data:  # none, or empty: the instances get none
        return None
    if len(data) > userdata.MAX_BYTES:
        raise fail(f"user_data is {len(data)} bytes; at most {userdata.MAX_BYTES} (as EC2)")
    return data


def parse_options(cloud: CloudSpec) -> Ec2Options:
    """Ec2Options of a cloud entry, re-checked against the ec2 schema (`cloudinitd.cloudspec`).

    Entries from plans and the catalog were checked at load time; entries read
    back from a run's record pass the same check here, so the provider never
    acts on an option the schema does not know.
    """
    o = check_options(cloud)

    def fail(message: str) -> PlanError:
        pos = cloud.pos
        return PlanError(
            f"cloud {cloud.name!r}: {message}",
            file=pos.file if pos else None,
            line=pos.line if pos else None,
        )

    creds = o.get("credentials") or {}
    groups = o.get("security_groups", [])
    return Ec2Options(
        cloud=cloud.name,
        endpoint=o.get("endpoint"),
        region=o.get("region"),
        credentials=Credentials(
            profile=creds.get("profile"),
            access_key_env=creds.get("access_key_env"),
            secret_key_env=creds.get("secret_key_env"),
            session_token_env=creds.get("session_token_env"),
        ),
        key_name=o.get("key_name"),
        security_groups=(groups,) if isinstance(groups, str) else tuple(groups),
        subnet=o.get("subnet"),
        user_data=_user_data(o, fail),
        address=o.get("address"),
        instance_types=dict(o.get("instance_types", {})),
        images=dict(o.get("images", {})),
        spot=o.get("spot"),
        max_attempts=int(o.get("max_attempts", 3)),
        connect_timeout=float(o.get("connect_timeout", 10)),
        read_timeout=float(o.get("read_timeout", 60)),
        poll_interval=float(o.get("poll_interval", 2)),
        storage=parse_storage(o.get("storage"), o.get("endpoint"), fail),
    )
