"""Reaching a run's instances after boot: which instances, how to log in, what they export.

The CLI's `ssh`, `exec` and `output` only format what these functions
return. Logins use the run's own key and its pinned known_hosts, never the
user's ssh config, agent or default keys (as the engine's own connections).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloudinitd.engine.context import RunContext
from cloudinitd.errors import CloudinitdError, UsageError
from cloudinitd.graph import boot_levels, build_graph
from cloudinitd.remote import SshTarget
from cloudinitd.store import Store


@dataclass(frozen=True)
class Instance:
    """One live instance of a run and how to log in to it."""

    service: str
    index: int
    address: str
    target: SshTarget

    @property
    def label(self) -> str:
        return f"{self.service}/{self.index}"


def service_order(ctx: RunContext, names: set[str] | None = None) -> list[str]:
    """Services in dependency order (boot level, then name); names the plan lost go last."""
    try:
        order = [name for level in boot_levels(build_graph(ctx.plan)) for name in sorted(level)]
    except CloudinitdError:
        order = sorted(ctx.plan.services)
    if names is None:
        return order
    return [n for n in order if n in names] + sorted(names - set(order))


def dependency_order(store: Store, home: Path, run: str, names: set[str]) -> list[str]:
    """`names` in the order of the run's plan graph; alphabetical if the plan cannot load."""
    from cloudinitd.engine.context import open_run

    try:
        ctx = open_run(home, store, run)
    except CloudinitdError:
        return sorted(names)
    return service_order(ctx, names)


def instances(ctx: RunContext, services: list[str] | tuple[str, ...] = ()) -> list[Instance]:
    """Live instances with an address, in dependency order; unknown services are a UsageError."""
    known = service_order(ctx, {row.service for row in ctx.store.instances(ctx.run)}
                          | set(ctx.plan.services))
    for name in services:
        if name not in known:
            raise UsageError(f"run {ctx.run!r} has no service {name!r}; services: "
                             + (", ".join(known) or "none"))
    rank = {name: i for i, name in enumerate(known)}
    out = []
    for row in ctx.store.instances(ctx.run):
        if services and row.service not in services:
            continue
        spec = ctx.plan.services.get(row.service)
        if spec is None or not row.address:
            continue  # no longer in the plan (no login known) or not yet addressed
        out.append(Instance(row.service, row.idx, row.address, ctx.target(spec, row)))
    return sorted(out, key=lambda i: (rank.get(i.service, len(rank)), i.index))


def choose(ctx: RunContext, selector: str | None) -> Instance:
    """The instance `SERVICE[/INDEX]` names, or the run's only one; else a UsageError listing them."""
    service, _, index = (selector or "").partition("/")
    found = instances(ctx, [service] if service else [])
    choices = ", ".join(i.label for i in instances(ctx)) or "none"
    if index:
        if not index.isdigit():
            raise UsageError(f"{selector!r}: INDEX must be a number (e.g. {service}/0)")
        found = [i for i in found if i.index == int(index)]
    if len(found) == 1:
        return found[0]
    if not found:
        raise UsageError(f"run {ctx.run!r} has no live instance {selector or ''}".rstrip()
                         + f"; instances: {choices}")
    raise UsageError(f"run {ctx.run!r} has {len(found)} instances"
                     + (f" of {service}" if service else "")
                     + f"; name one as SERVICE/INDEX: {', '.join(i.label for i in found)}")


def ssh_argv(target: SshTarget, command: list[str] | None = None, ssh: str = "ssh") -> list[str]:
    """The OpenSSH command line that logs in as the engine does: the run's key, its pins only."""
    argv = [
        ssh, "-F", "/dev/null",  # the user's ssh config must not change where or how we log in
        "-i", str(target.key_path),
        "-p", str(target.port),
        "-o", "IdentitiesOnly=yes",
        "-o", "IdentityAgent=none",
        "-o", f"UserKnownHostsFile={target.known_hosts}",
        "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "StrictHostKeyChecking=yes",
        "-o", "UpdateHostKeys=no",
        "-l", target.user,
        target.address,
    ]
    if command:
        # Passed on as given: ssh joins them with spaces for the remote shell, as usual.
        argv += ["--", *command]
    return argv


def outputs(store: Store, home: Path, run: str) -> dict[str, list[dict[str, Any]]]:
    """Every live instance's address and exported values, per service in dependency order."""
    attrs = store.attributes(run)
    by_service: dict[str, list[dict[str, Any]]] = {}
    for row in store.instances(run):
        item = dict(attrs.get((row.service, row.idx), {}))
        # Built-ins over exports, as templates see them.
        item |= {"index": row.idx, "address": row.address,
                 "private_address": row.private_address or row.address,
                 "hostname": row.hostname, "instance_id": row.instance_id,
                 "cloud": row.cloud}
        by_service.setdefault(row.service, []).append(item)
    for items in by_service.values():
        items.sort(key=lambda item: item["index"])
    return {name: by_service[name]
            for name in dependency_order(store, home, run, set(by_service))}


def select_output(data: dict[str, list[dict[str, Any]]], run: str,
                  selector: str | None) -> Any:
    """`SERVICE` (its instances) or `SERVICE.ATTR` (one value per instance) of `outputs`."""
    if not selector:
        return data
    service, _, attr = selector.partition(".")
    if service not in data:
        raise UsageError(f"run {run!r} has no live service {service!r}; services: "
                         + (", ".join(data) or "none"))
    if not attr:
        return data[service]
    missing = [i["index"] for i in data[service] if attr not in i]
    if missing:
        have = sorted({k for i in data[service] for k in i})
        raise UsageError(f"{service} instance(s) {missing} have no attribute {attr!r};"
                         f" attributes: {', '.join(have)}")
    return [i[attr] for i in data[service]]


def require_run(store: Store, run: str) -> dict[str, Any]:
    """The run's record; an unknown name is a UsageError listing the recorded runs."""
    from cloudinitd.errors import RunNotFound

    try:
        return store.run(run)
    except RunNotFound:
        names = [row.name for row in store.runs()]
        raise UsageError(f"no run named {run!r}; runs: {', '.join(names) or 'none'}") from None


def ensure_pinned(inst: Instance) -> None:
    """Pin the host key before handing the login to OpenSSH's strict checking.

    A host no step ever connected to (a static service without scripts) has no
    pin yet: connect once through the engine's session, which trusts on first
    use exactly as a boot step would, and verifies an existing pin otherwise.
    """
    from cloudinitd.remote import session_for
    from cloudinitd.remote.hostkeys import known_hosts_name

    name = known_hosts_name(inst.target.address, inst.target.port)
    try:
        lines = inst.target.known_hosts.read_text().splitlines()
    except FileNotFoundError:
        lines = []
    if any(line.split() and name in line.split()[0].split(",") for line in lines):
        return
    session_for(inst.target, inst.service).close()


def addresses(ctx: RunContext) -> dict[str, list[dict[str, Any]]]:
    """Live instances' `index` and `address` per service, in dependency order (boot's ending)."""
    rows = ctx.store.instances(ctx.run)
    out: dict[str, list[dict[str, Any]]] = {}
    for name in service_order(ctx, {r.service for r in rows}):
        out[name] = sorted(({"index": r.idx, "address": r.address}
                            for r in rows if r.service == name), key=lambda i: i["index"])
    return out


def plan_outputs(ctx: RunContext) -> tuple[dict[str, str], dict[str, str]]:
    """The plan's `outputs:` rendered with the run's live world: (values, errors by name)."""
    from cloudinitd.plan.outputs import render_outputs
    from cloudinitd.sandbox import SESSION_SECONDS, render_session

    if not ctx.plan.outputs:
        return {}, {}
    with render_session(SESSION_SECONDS):
        return render_outputs(ctx.plan, ctx.run, ctx.world())


def run_plan_outputs(store: Store, home: Path, run: str) -> tuple[dict[str, str], dict[str, str]]:
    """`plan_outputs` of a recorded run; nothing when its plan cannot be loaded any more."""
    from cloudinitd.engine.context import open_run

    try:
        ctx = open_run(home, store, run)
    except CloudinitdError:
        return {}, {}
    return plan_outputs(ctx)
