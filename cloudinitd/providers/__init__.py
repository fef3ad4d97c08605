"""Providers: one small interface (`base.Provider`), one module per kind of cloud."""

from __future__ import annotations

import importlib
from pathlib import Path

from cloudinitd.errors import PlanError
from cloudinitd.plan.model import CloudSpec
from cloudinitd.providers.base import Provider

# Imported lazily: boto3 or LXC helpers load only when a plan uses them.
KINDS = {
    "static": "cloudinitd.providers.static:StaticProvider",
    "local": "cloudinitd.providers.local:LocalProvider",
    "ec2": "cloudinitd.providers.ec2:Ec2Provider",
    "qemu": "cloudinitd.providers.qemu:QemuProvider",
    # The in-process test double (cloudinitd/testing/memory.py); its cloud-entry
    # keys are known once `cloudinitd.testing` is imported.
    "memory": "cloudinitd.testing.memory:MemoryProvider",
}


def provider_class(kind: str) -> type[Provider]:
    try:
        module_name, _, attr = KINDS[kind].partition(":")
    except KeyError:
        raise PlanError(f"unknown provider {kind!r} (known: {', '.join(sorted(KINDS))})") from None
    return getattr(importlib.import_module(module_name), attr)


def get_provider(cloud: CloudSpec, home: Path) -> Provider:
    return provider_class(cloud.provider)(cloud, home)
