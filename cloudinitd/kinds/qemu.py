"""`qemu`: full VMs under QEMU on this machine; `cloud: qemu` needs no entry."""

from __future__ import annotations

from cloudinitd.kinds.base import Declaration

DECLARATION = Declaration(
    kind="qemu",
    doc="full VMs under QEMU on this machine",
    implicit_cloud=True,
    builds_images=True,
    user_data="cloud-init",
    cloud_options={
        "accel": {"enum": ["kvm", "tcg"]},
        "sizes": {
            "type": "object",
            "x-expect": "a mapping of size names to [memory_mb, cpus]",
            "additionalProperties": {
                "type": "array",
                "x-expect": "[memory_mb, cpus]",
                "prefixItems": [
                    {"type": "integer", "minimum": 128, "x-expect": "memory in MB (>= 128)"},
                    {"type": "integer", "minimum": 1, "x-expect": "a number of cpus (>= 1)"},
                ],
                "minItems": 2,
                "maxItems": 2,
            },
        },
    },
)
