"""Load a plan file into a resolved, checked `Plan`.

Order: YAML (with lines) -> JSON Schema (shape, every error at once) ->
meaning (vars, clouds, then each service: plan/services.py and
plan/placement.py; every error at once) ->
graph (references and cycles). Any problem raises PlanErrors whose lines
read `FILE:LINE: message`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cloudinitd import kinds
from cloudinitd.cloudspec import validate_cloud
from cloudinitd.errors import PlanError, PlanErrors
from cloudinitd.graph import build_graph
from cloudinitd.paths import display_path
from cloudinitd.plan.durations import parse_duration
from cloudinitd.plan.fields import (
    empty_sections,
    parse_override,
    plain,
    safe_plan_name,
)
from cloudinitd.plan.limits import DEFAULT_LIMITS, Limits, read_text
from cloudinitd.plan.model import CloudSpec, Plan, ServiceSpec
from cloudinitd.plan.outputs import check_outputs
from cloudinitd.plan.schema import did_you_mean, validate_plan_data
from cloudinitd.plan.services import ServiceMixin
from cloudinitd.plan.yamlpos import PosDict, load_yaml

# `parse_override` is imported from here by the command line (cli/common.py).
__all__ = ["BUILTIN_CLOUDS", "load_plan", "parse_override"]

# Clouds that exist without an entry (`cloud: KIND`), as the built-in kinds declare.
BUILTIN_CLOUDS = kinds.implicit_clouds(kinds.BUILTIN)
# Settings a service on another service's host takes from that service unless it sets them.
SSH_KEYS = ("ssh_user", "ssh_key", "ssh_port")
# Vars the engine reads without a plan declaring them (the home share, engine/context.py).
ENGINE_VARS = frozenset({"home_host", "home_listen", "home_dir", "home_user", "home_port"})


class _Loader(ServiceMixin):
    def __init__(
        self,
        path: Path,
        data: PosDict,
        overrides: dict[str, str] | None,
        catalog: dict[str, CloudSpec] | None,
        limits: Limits = DEFAULT_LIMITS,
    ):
        self.limits = limits
        self.rendering_stopped = False  # after one template ran out of budget
        self.path = path
        self.file = display_path(path)
        self.data = data
        self.overrides = overrides or {}
        self.catalog = catalog or {}
        self.errors: list[PlanError] = []

    def error(self, message: str, line: int | None) -> None:
        self.errors.append(PlanError(message, self.file, line))

    # -- plan-wide parts -------------------------------------------------

    def plan_name(self) -> str:
        if "name" in self.data:
            return str(self.data["name"])
        if self.path.name in ("plan.yml", "plan.yaml"):
            stem = self.path.resolve().parent.name
        else:
            stem = self.path.stem
        # Run names derive from the plan name: keep it in the run-name charset.
        return safe_plan_name(stem)

    def variables(self) -> dict[str, Any]:
        declared = self.data.get("vars") or PosDict()
        out = plain(declared)
        for key, text in self.overrides.items():
            if key not in out and key not in ENGINE_VARS:
                hint = did_you_mean(key, list(out)) or (
                    f" (its vars: {', '.join(sorted(out))})" if out else " (it has no vars)")
                line = self.data.key_line("vars") if "vars" in self.data else 1
                self.error(f"--var {key}: the plan has no var {key!r}{hint}", line)
                continue
            out[key] = parse_override(text)
        return out

    def clouds(self) -> dict[str, CloudSpec]:
        implicit = kinds.implicit_clouds(kinds.declared())
        out = {name: CloudSpec(name, kind) for name, kind in implicit.items()}
        out.update(self.catalog)
        entries: PosDict = self.data.get("clouds") or PosDict()
        for name, entry in entries.items():
            # The one cloud-entry check (cloudspec), before a run could record it in the store.
            spec, errors = validate_cloud(name, entry, self.file, entries.key_line(name))
            self.errors.extend(errors)
            # A refused entry still counts as defined: services naming it get no second error.
            out[name] = spec or CloudSpec(name, "refused")
        return out

    # -- the whole plan --------------------------------------------------

    def build(self) -> Plan:
        plan_vars = self.variables()
        clouds = self.clouds()
        services: PosDict = self.data["services"]
        specs: dict[str, ServiceSpec] = {}
        for name, entry in services.items():
            spec = self.service(
                name, entry or PosDict(), services.key_line(name), plan_vars, clouds, services
            )
            specs[name] = spec
        lifetime = None
        if "lifetime" in self.data:
            try:
                lifetime = parse_duration(self.data["lifetime"])
            except ValueError as exc:
                self.error(f"lifetime: {exc}", self.data.key_line("lifetime"))
        preserve = self.data.get("preserve") is True
        for spec in specs.values():
            if spec.lifetime is None and spec.launches:
                spec.lifetime = lifetime
            if spec.launches and "preserve" not in spec.field_pos:
                spec.preserve = preserve  # the run-level option, unless the service says
        total = sum(spec.count for spec in specs.values() if spec.launches)
        if total > self.limits.per_run:
            self.error(
                f"the plan launches {total} instances, above the limit of "
                f"{self.limits.per_run} per run (see --max-instances)",
                self.data.key_line("services"),
            )
        self.inherit_host_ssh(specs, services)
        plan = Plan(
            name=self.plan_name(),
            path=self.path.resolve(),
            vars=plan_vars,
            clouds=clouds,
            services=specs,
            lifetime=lifetime,
            preserve=preserve,
        )
        self.outputs(plan)
        return plan

    def outputs(self, plan: Plan) -> None:
        """Plan-level `outputs:`: templates, checked like scripts once the graph is built."""
        given: PosDict = self.data.get("outputs") or PosDict()
        for key, value in given.items():
            line = given.key_line(key)
            if key in plan.services:
                self.error(f"outputs: {key!r} is also a service; `output RUN {key}` must"
                           " mean one of them", line)
            plan.outputs[key] = str(value).lower() if isinstance(value, bool) else str(value)
            plan.outputs_pos[key] = self.pos(line)

    def inherit_host_ssh(self, specs: dict[str, ServiceSpec], services: PosDict) -> None:
        """A service on another service's machine logs in as that service does.

        Along a chain of `host:` services, each setting comes from the nearest one
        that writes it, else from the machine's own service at the end of the chain.
        """
        for spec in specs.values():
            own = services[spec.name] or {}
            wanted = [key for key in SSH_KEYS if key not in own]
            target, seen = spec.host, {spec.name}
            while wanted and target in specs and target not in seen:
                seen.add(target)
                source = specs[target]
                written = services[target] or {}
                last = source.host not in specs or source.host in seen
                for key in [k for k in wanted if k in written or last]:
                    # A one-machine `hosts:` entry may carry its own port.
                    value = (source.ssh_port_of(0) if key == "ssh_port"
                             else getattr(source, key))
                    setattr(spec, key, value)
                    spec.field_pos.pop(key, None)
                    wanted.remove(key)
                target = source.host
            machine = specs.get(spec.host) if isinstance(spec.host, str) else None
            if machine and (machine.launches or machine.hosts) and machine.count != 1:
                self.error(
                    f"service {spec.name!r}: host {spec.host!r} has "
                    f"{specs[spec.host].count} instances; host: needs a one-instance "
                    "service",
                    spec.pos_of("host").line,
                )


def load_plan(
    path: str | os.PathLike[str],
    overrides: dict[str, str] | None = None,
    catalog: dict[str, CloudSpec] | None = None,
    limits: Limits | None = None,
) -> Plan:
    """Parse, validate and resolve a plan; raise PlanErrors listing every problem."""
    limits = limits or Limits.from_env()
    path = Path(path)
    try:
        file = display_path(path)
    except ValueError:  # a NUL byte in the name (a path from a request): say so, no traceback
        file = str(path).encode("unicode_escape").decode("ascii")
    try:
        text = read_text(path, limits.plan_bytes, file)
    except PlanError as exc:
        raise PlanErrors([exc]) from None
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise PlanErrors([PlanError(f"cannot read plan: {reason}", file)]) from None
    try:
        data = load_yaml(text, file)
    except PlanError as exc:
        raise PlanErrors([exc]) from None
    empty_sections(data)
    errors = validate_plan_data(data, file)
    if errors:
        raise PlanErrors(errors)
    loader = _Loader(path, data, overrides, catalog, limits)
    plan = loader.build()
    if loader.errors:
        raise PlanErrors(sorted(loader.errors, key=lambda e: e.line or 0))
    build_graph(plan)
    check_outputs(plan)
    return plan
