"""Provider kinds as data: each kind's declaration, and the registry the plan layer reads.

One module per kind (`kinds/ec2.py`, ...) declares its cloud-entry keys,
its service-level options, whether `cloud: KIND` works without an entry,
and a line of docs. `cloudspec` and `plan` assemble their schemas from
these declarations and name no kind themselves; `providers` maps each kind
to its class. Nothing here imports a provider or does I/O (pure core).
"""

from __future__ import annotations

from typing import Any

from cloudinitd.kinds import ec2, local, qemu, static
from cloudinitd.kinds.base import Declaration

__all__ = ["BUILTIN", "HOSTS", "Declaration", "declared", "default_cloud", "iaas_kind",
           "image_builders", "implicit_clouds", "list_options", "register", "service_options",
           "unregister"]

# In this order in the assembled schemas (the `cloudinitd schema` output keeps its order).
BUILTIN: dict[str, Declaration] = {
    d.kind: d for d in (ec2.DECLARATION, local.DECLARATION, qemu.DECLARATION,
                        static.DECLARATION)
}


def _the_one(kinds: dict[str, Declaration], capability: str) -> str:
    """The kind that declares `capability` (exactly one built-in kind does)."""
    return next(d.kind for d in kinds.values() if getattr(d, capability))


# The kind of services on existing hosts, and the cloud their instances are recorded under.
HOSTS = _the_one(BUILTIN, "existing_hosts")

# Kinds from outside (a plug-in, the `memory` test double), kept apart so that
# BUILTIN (and the kinds that error messages list) never depend on what a process imported.
PLUGINS: dict[str, Declaration] = {}


def register(declaration: Declaration) -> None:
    """A kind from outside joins: its cloud entries and service options are then checked."""
    PLUGINS[declaration.kind] = declaration


def unregister(kind: str) -> None:
    PLUGINS.pop(kind, None)


def declared() -> dict[str, Declaration]:
    """Every kind a plan may use now: the built-in ones, then the registered ones."""
    return {**BUILTIN, **PLUGINS}


def service_options(kinds: dict[str, Declaration]) -> dict[str, Any]:
    """The service-level options of these kinds, in declaration order (first one wins)."""
    out: dict[str, Any] = {}
    for d in kinds.values():
        for key, schema in d.service_options.items():
            out.setdefault(key, schema)
    return out


def list_options(kinds: dict[str, Declaration]) -> frozenset[str]:
    return frozenset(key for d in kinds.values() for key in d.list_options)


def default_cloud(kinds: dict[str, Declaration]) -> str:
    """The cloud of a service that names none: the implicit cloud of the default kind."""
    return _the_one({k: d for k, d in kinds.items() if d.implicit_cloud}, "default_cloud")


def implicit_clouds(kinds: dict[str, Declaration]) -> dict[str, str]:
    """`{cloud name: kind}` of the clouds that exist without an entry."""
    return {d.kind: d.kind for d in kinds.values() if d.implicit_cloud}


def image_builders(kinds: dict[str, Declaration]) -> list[str]:
    """Kinds `cloudinitd image build` makes base images for, in declaration order."""
    return [d.kind for d in kinds.values() if d.builds_images]


def iaas_kind(kinds: dict[str, Declaration]) -> str:
    """The kind of an EC2-style IaaS cloud given by endpoint URL and access keys."""
    return _the_one(kinds, "iaas")
