"""`ec2`: any EC2-compatible cloud. Its cloud-entry keys and its service-level options."""

from __future__ import annotations

from cloudinitd.images.naming import STORAGE_SCHEMA
from cloudinitd.kinds.base import CREDENTIALS, SECONDS, STRINGS, Declaration, name_map, text

# Decoded and sized by the loader (plan/userdata.py), whose messages never quote the
# value (user data may be private); line breaks and spaces are allowed.
BASE64_USER_DATA = {"type": "string",
                    "x-expect": "base64 of the user data bytes (gzip or text, <= 16 KB)"}

DECLARATION = Declaration(
    kind="ec2",
    doc="any EC2-compatible cloud",
    iaas=True,
    image_map="images",
    size_map="instance_types",
    user_data="any",  # EC2 hands any bytes (<= 16 KB) to the image's agent
    key_pairs=True,
    cloud_options={
        "endpoint": {"type": "string", "x-expect": "a URL like https://host[:port][/path]"},
        "region": text("a region name", r"^[A-Za-z0-9._-]{1,64}$"),
        "credentials": CREDENTIALS,
        "key_name": text("a key pair name"),
        "security_groups": {
            "x-expect": "a security group (name or sg- id) or a list of them",
            "oneOf": [text("a group"), {"type": "array", "items": text("a group")}],
        },
        "subnet": text("a subnet id"),
        "user_data": {"type": "string", "maxLength": 16384, "x-expect": "text up to 16 KB"},
        "user_data_base64": BASE64_USER_DATA,
        "address": {"enum": ["public", "private"]},
        "instance_types": name_map("instance type"),
        "images": name_map("image id"),
        "spot": {
            "type": "object",
            "x-expect": "{max_price: PRICE, fallback: on-demand|none}",
            "properties": {
                "max_price": {"type": ["number", "string"], "x-expect": "a price"},
                "fallback": {"enum": ["on-demand", "none"]},
            },
            "additionalProperties": False,
        },
        "max_attempts": {
            "type": "integer",
            "minimum": 1,
            "maximum": 20,
            "x-expect": "a whole number from 1 to 20",
        },
        "connect_timeout": SECONDS,
        "read_timeout": SECONDS,
        "poll_interval": SECONDS,
        "storage": STORAGE_SCHEMA,
    },
    # A service may override these per service (providers/ec2/provider.py reads them).
    service_options={
        "user_data": {"type": "string", "x-expect": "text (a script, #cloud-config, ...)"},
        # Binary user data (gzip, ...) in a YAML text: its base64 (plan/userdata.py).
        "user_data_base64": BASE64_USER_DATA,
        "security_groups": STRINGS,
        "key_name": {"type": "string"},
        "subnet": {"type": "string"},
    },
    list_options=("security_groups",),
)
