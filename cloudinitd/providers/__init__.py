"""Providers: one small interface (`base.Provider`), one module per kind of cloud.

Each kind is one `Kind` record here (where its class is, whether its
instances live on this machine) plus its declaration in `cloudinitd.kinds`
(its plan options: cloud-entry keys, service keys, docs), which the pure
plan layer reads without importing a provider. So no other layer names a
kind: the command line asks `host_local_kinds()` which providers keep
instances on this machine, rather than listing them.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from cloudinitd import kinds
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


def _builtin(name: str, target: str, host_local: bool = False) -> Kind:
    return Kind(target, host_local, doc=kinds.BUILTIN[name].doc)


KINDS: dict[str, Kind] = {
    "static": _builtin("static", "cloudinitd.providers.static:StaticProvider"),
    "local": _builtin("local", "cloudinitd.providers.local:LocalProvider", host_local=True),
    "ec2": _builtin("ec2", "cloudinitd.providers.ec2:Ec2Provider"),
    "qemu": _builtin("qemu", "cloudinitd.providers.qemu:QemuProvider", host_local=True),
}


# Kinds from outside this package, kept apart so that KINDS (and the kinds error
# messages list) are the built-in ones whatever a process happened to import.
PLUGINS: dict[str, Kind] = {}


def register_kind(name: str, kind: Kind) -> None:
    """A kind from outside this package (the `memory` test double, a plug-in) joins the
    registry; it declares its plan options with `cloudinitd.kinds.register` (or its
    cloud-entry keys alone with `cloudspec.register_provider_schema`)."""
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
