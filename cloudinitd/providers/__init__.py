"""Providers: one small interface (`base.Provider`), one module per kind of cloud.

Each kind describes itself here in one `Kind` record, so nothing outside
`providers/` names a kind: the command line asks `host_local_kinds()`
which providers keep instances on this machine, rather than listing them.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from cloudinitd.errors import PlanError
from cloudinitd.plan.model import CloudSpec
from cloudinitd.providers.base import Provider


@dataclass(frozen=True)
class Kind:
    """A provider kind: where its class is (imported lazily) and what it is."""

    target: str  # "module:Class"; boto3 or LXC helpers load only when a plan uses them
    # Its instances live on this machine: `cloudinitd clean` asks it for leftovers
    # of vanished runs even when no cloud entry names it.
    host_local: bool = False
    doc: str = ""


KINDS: dict[str, Kind] = {
    "static": Kind("cloudinitd.providers.static:StaticProvider", doc="existing hosts"),
    "local": Kind("cloudinitd.providers.local:LocalProvider", host_local=True,
                  doc="LXC system containers on this machine"),
    "ec2": Kind("cloudinitd.providers.ec2:Ec2Provider", doc="any EC2-compatible cloud"),
    "qemu": Kind("cloudinitd.providers.qemu:QemuProvider", host_local=True,
                 doc="full VMs under QEMU on this machine"),
}


# Kinds from outside this package, kept apart so that KINDS (and the kinds error
# messages list) are the built-in ones whatever a process happened to import.
PLUGINS: dict[str, Kind] = {}


def register_kind(name: str, kind: Kind) -> None:
    """A kind from outside this package (the `memory` test double, a plug-in) joins the
    registry; it registers its cloud-entry keys with `cloudspec.register_provider_schema`."""
    PLUGINS[name] = kind


def provider_class(kind: str) -> type[Provider]:
    try:
        module_name, _, attr = {**KINDS, **PLUGINS}[kind].target.partition(":")
    except KeyError:
        raise PlanError(f"unknown provider {kind!r} (known: {', '.join(sorted(KINDS))})") from None
    return getattr(importlib.import_module(module_name), attr)


def host_local_kinds() -> list[str]:
    """Kinds whose instances live on this machine, in registry order."""
    return [name for name, kind in KINDS.items() if kind.host_local]


def get_provider(cloud: CloudSpec, home: Path) -> Provider:
    return provider_class(cloud.provider)(cloud, home)
