"""What a provider kind declares about itself, and the schema pieces declarations share.

Pure data (no I/O, no provider import), so the plan layer can assemble its
schemas from declarations while the providers stay out of the pure core.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Declaration:
    """One provider kind's plan options: its schema fragments, defaults and docs."""

    kind: str
    # JSON Schema of each key its cloud entry (`clouds:` / clouds.yml) may hold.
    cloud_options: Mapping[str, Any] = field(default_factory=dict)
    # Keys a service may set for this provider (kept in ServiceSpec.options).
    service_options: Mapping[str, Any] = field(default_factory=dict)
    # Service options written as one string or a list: the loader keeps them as a list.
    list_options: tuple[str, ...] = ()
    # A cloud of this name and kind exists without any cloud entry (`cloud: local`).
    implicit_cloud: bool = False
    # Its implicit cloud is where a service that names no cloud launches (one kind says so).
    default_cloud: bool = False
    # What the kind is, for the layers that must not name it (capabilities, not names):
    # it serves services on existing hosts (`host:` / `hosts:`), launching nothing; one kind
    # says so, and its name is also the cloud those services' instances are recorded under.
    existing_hosts: bool = False
    # `cloudinitd image build` makes a cached base image for it on this machine.
    builds_images: bool = False
    # An EC2-style IaaS API at an endpoint URL with access keys: `launch-vm`'s
    # CLOUDINITD_IAAS_* variables and old cloudinit.d plans' `iaas:` describe a cloud of it.
    iaas: bool = False
    # Cloud-entry keys that map a plan's image and size names to this cloud's own
    # (`images:`, `instance_types:`), so clouds of one group may differ in both.
    image_map: str = ""
    size_map: str = ""
    # What its instances do with a service's `user_data` (plan/userdata.py): "any" (handed
    # to the image as given), "cloud-init" (the formats cloud-init runs), "script" (a `#!`
    # script run once at first boot) or "" (none: a plan or API call giving some is refused).
    user_data: str = ""
    # Its cloud has named key pairs (`key_name` / KeyName); elsewhere the run's own key
    # is installed and a key name is refused rather than ignored.
    key_pairs: bool = False
    doc: str = ""


_PRINTABLE = r"^[^\x00-\x1f\x7f]+$"


def text(expect: str, pattern: str = _PRINTABLE) -> dict[str, Any]:
    return {"type": "string", "maxLength": 255, "pattern": pattern, "x-expect": expect}


def name_map(expect: str) -> dict[str, Any]:
    return {
        "type": "object",
        "x-expect": f"a mapping of names to {expect}s",
        "additionalProperties": text(expect),
    }


ENV = text("the NAME of an environment variable (letters, digits, '_')",
           r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
SECONDS = {
    "type": "number",
    "exclusiveMinimum": 0,
    "maximum": 3600,
    "x-expect": "seconds (a number above 0, at most 3600)",
}
STRINGS = {
    "x-expect": "a string or a list of strings",
    "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
}
# Credentials by reference only: a profile name, or the NAMES of environment variables.
CREDENTIALS: dict[str, Any] = {
    "type": "object",
    "x-expect": "{profile: NAME} or {access_key_env: VAR, secret_key_env: VAR}",
    "properties": {
        "profile": text("an AWS profile name", r"^[A-Za-z0-9_.@+-]{1,128}$"),
        "access_key_env": ENV,
        "secret_key_env": ENV,
        "session_token_env": ENV,
    },
    "additionalProperties": False,
    "dependentRequired": {
        "access_key_env": ["secret_key_env"],
        "secret_key_env": ["access_key_env"],
        "session_token_env": ["access_key_env"],
    },
    "x-message": "access_key_env and secret_key_env go together (session_token_env needs both)",
    "if": {"required": ["profile"]},
    "then": {
        "maxProperties": 1,
        "x-message": "give either profile or access_key_env/secret_key_env, not both",
    },
}
