"""Making the boto3 EC2 client of one cloud, and turning botocore errors into ours.

Keys are read from the environment (or a profile, or the AWS chain) here and
handed straight to boto3: they never pass through a CloudSpec, an
InstanceInfo, an exception message or a log line.
"""

from __future__ import annotations

import os
from typing import Any

from cloudinitd.errors import CapacityError, ProviderError
from cloudinitd.providers.ec2.options import DEFAULT_REGION, Ec2Options

# Errors that mean "this cloud is full for now": the overflow policy moves on.
CAPACITY_CODES = frozenset(
    {
        "InstanceLimitExceeded",
        "InsufficientInstanceCapacity",
        "InsufficientCapacity",
        "InsufficientHostCapacity",
        "InsufficientReservedInstanceCapacity",
        "InsufficientFreeAddressesInSubnet",
        "VcpuLimitExceeded",
        "MaxSpotInstanceCountExceeded",
        "SpotMaxPriceTooLow",
        "ResourceLimitExceeded",
    }
)
NOT_CAPACITY = frozenset({"RequestLimitExceeded"})  # throttling: retried by botocore, not "full"
AUTH_CODES = frozenset(
    {
        "AuthFailure",
        "UnauthorizedOperation",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "OptInRequired",
        "ExpiredToken",
        "InvalidAccessKeyId",
    }
)


def error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return response.get("Error", {}).get("Code")
    return None


def is_capacity(code: str | None) -> bool:
    if not code or code in NOT_CAPACITY:
        return False
    return code in CAPACITY_CODES or "LimitExceeded" in code or "Quota" in code


def make_client(opts: Ec2Options) -> Any:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ProfileNotFound

    creds = opts.credentials
    kwargs: dict[str, Any] = {}
    try:
        if creds.profile:
            session = boto3.session.Session(profile_name=creds.profile)
        else:
            if creds.access_key_env:
                kwargs["aws_access_key_id"] = _env(opts, creds.access_key_env, "access_key_env")
                kwargs["aws_secret_access_key"] = _env(opts, creds.secret_key_env, "secret_key_env")
                if creds.session_token_env:
                    kwargs["aws_session_token"] = _env(
                        opts, creds.session_token_env, "session_token_env"
                    )
            session = boto3.session.Session()
    except ProfileNotFound:
        raise ProviderError(
            f"cloud {opts.cloud!r}: AWS profile {creds.profile!r} not found "
            "(~/.aws/config, ~/.aws/credentials)"
        ) from None
    except BotoCoreError as exc:
        raise ProviderError(f"cloud {opts.cloud!r}: {exc}") from None
    region = opts.region or session.region_name or DEFAULT_REGION
    config = Config(
        retries={"mode": "standard", "total_max_attempts": opts.max_attempts},
        connect_timeout=opts.connect_timeout,
        read_timeout=opts.read_timeout,
        user_agent_extra="cloudinitd",
    )
    try:
        return session.client(
            "ec2", region_name=region, endpoint_url=opts.endpoint, config=config, **kwargs
        )
    except (BotoCoreError, ValueError) as exc:
        raise ProviderError(f"cloud {opts.cloud!r}: cannot make an EC2 client: {exc}") from None


def _env(opts: Ec2Options, name: str | None, key: str) -> str:
    value = os.environ.get(name or "")
    if not value:
        raise ProviderError(
            f"cloud {opts.cloud!r}: environment variable {name} (credentials.{key}) is not set"
        )
    return value


def translate(exc: Exception, opts: Ec2Options, action: str) -> ProviderError:
    """One clear ProviderError (CapacityError for a full cloud) for a botocore failure."""
    from botocore.exceptions import (
        ClientError,
        ConnectionError,
        HTTPClientError,
        NoCredentialsError,
        PartialCredentialsError,
    )
    from botocore.parsers import ResponseParserError

    where = f"cloud {opts.cloud!r} ({opts.endpoint or 'AWS'})"
    if isinstance(exc, ClientError):
        code = error_code(exc) or "Unknown"
        message = exc.response.get("Error", {}).get("Message", "")
        if is_capacity(code):
            return CapacityError(f"{where}: {action}: {code}: {message}")
        if code in AUTH_CODES:
            return ProviderError(f"{where}: credentials rejected ({code}): {message}")
        return ProviderError(f"{where}: {action} failed: {code}: {message}")
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return ProviderError(
            f"{where}: no usable AWS credentials; set credentials: {{profile: NAME}} or "
            "{access_key_env: VAR, secret_key_env: VAR} in the cloud entry"
        )
    if isinstance(exc, ConnectionError | HTTPClientError):
        return ProviderError(f"{where}: cannot reach the EC2 endpoint: {type(exc).__name__}")
    if isinstance(exc, ResponseParserError):
        return ProviderError(f"{where}: {action}: the endpoint's answer is not an EC2 API answer")
    return ProviderError(f"{where}: {action} failed: {type(exc).__name__}: {exc}")


def method_name(action: str) -> str:
    """EC2 action name -> boto3 method name (RunInstances -> run_instances)."""
    out = []
    for ch in action:
        if ch.isupper() and out:
            out.append("_")
        out.append(ch.lower())
    return "".join(out)
