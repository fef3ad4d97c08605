"""Dry-run stand-ins for the world a template renders against: nothing is launched.

Split from templates.py (issue 10): building a placeholder world is plan
inspection, not rendering. Addresses come from the documentation ranges so a
dry-run script that connects somewhere reaches nobody.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from cloudinitd import kinds
from cloudinitd.plan.model import Plan

# Placeholder addresses for dry runs: the documentation ranges (RFC 5737),
# which belong to nobody and are never contacted.
_TEST_NETS = [
    ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")
]


def placeholder_extra() -> dict[str, Any]:
    """Dry-run stand-ins for the extra context names (`home`), never contacted."""
    home = {k: f"<home.{k}>" for k in ("user", "dir", "key", "known_host")}
    return {"home": {**home, "host": "192.0.2.254", "port": 22}}


def _placeholder_addresses():
    while True:
        for net in _TEST_NETS:
            yield from (str(a) for a in net.hosts())


def placeholder_world(plan: Plan) -> dict[str, list[dict[str, Any]]]:
    """A world for dry runs: TEST-NET addresses and `<svc.attr>` exports, nothing launched."""
    addresses = _placeholder_addresses()
    world: dict[str, list[dict[str, Any]]] = {}
    for name, spec in plan.services.items():
        count = spec.count if spec.launches or spec.hosts else 1
        cloud = spec.clouds[0].cloud if spec.clouds else kinds.HOSTS
        instances = []
        for i in range(count):
            address = next(addresses)
            attrs: dict[str, Any] = {
                "address": address,
                "private_address": address,
                "hostname": f"{name}-{i}",
                "instance_id": f"dry-run-{name}-{i}",
                "cloud": cloud,
                "index": i,
                "name": name,
            }
            attrs.update({attr: f"<{name}.{attr}>" for attr in [*spec.exports, *spec.values]})
            instances.append(attrs)
        world[name] = instances
    # A service on an existing host, or on another service's machine, has that address.
    for name, spec in plan.services.items():
        if spec.launches:
            continue
        if spec.hosts:  # `hosts:`: each instance is its listed machine
            for item, host in zip(world[name], spec.hosts, strict=True):
                item.update(address=host.address, private_address=host.address)
            continue
        root, seen = spec, {name}
        while root.host in plan.services and root.host not in seen:
            seen.add(root.host)
            root = plan.services[root.host]
        if root.launches and world[root.name]:
            machine = world[root.name][0]
            keys = ("address", "private_address", "hostname", "instance_id", "cloud")
            world[name][0].update({k: machine[k] for k in keys})
        elif root.host:
            world[name][0].update(address=root.host, private_address=root.host)
    return world
