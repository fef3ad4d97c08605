"""The dependency graph of a plan: `after:` plus every reference between services.

References are found by reading the Jinja2 syntax tree of each script
template and env value (`{{ head.address }}`, `{% for c in compute.instances %}`)
and from `host:` (one template's scan: refscan.py). Unknown names and
attributes are reported at the template line where they are written, so a
typo fails at load time, not mid-boot.
"""

from __future__ import annotations

from collections.abc import Iterator

import networkx as nx

from cloudinitd.errors import PlanError, PlanErrors
from cloudinitd.paths import display_path
from cloudinitd.plan.model import Plan
from cloudinitd.plan.schema import did_you_mean
from cloudinitd.refscan import Reference, Scan, scan_text
from cloudinitd.templates import is_template


def _scans(plan: Plan) -> Iterator[Scan]:
    for spec in plan.services.values():
        sensor = [spec.autoscale.sensor] if spec.autoscale else []
        for script in [*spec.scripts.values(), *sensor]:
            if is_template(script.path):
                yield scan_text(plan, spec, script.source, display_path(script.path), 0, True)
            for arg, pos in zip(script.args, script.args_pos, strict=False):
                yield scan_text(plan, spec, arg, pos.file, pos.line, False)
        for key, value in spec.env.items():
            at = spec.pos_of(f"env.{key}")
            yield scan_text(plan, spec, value, at.file, at.line, False)
        for key, value in spec.values.items():
            at = spec.pos_of(f"values.{key}")
            yield scan_text(plan, spec, value, at.file, at.line, False)


def _collect(plan: Plan) -> tuple[list[Reference], list[PlanError]]:
    refs: list[Reference] = []
    errors: list[PlanError] = []
    for scan in _scans(plan):
        refs.extend(scan.refs)
        errors.extend(scan.errors)
    for spec in plan.services.values():
        if spec.host in plan.services and spec.host != spec.name:
            refs.append(Reference(spec.name, spec.host, None, spec.pos_of("host")))
    return refs, errors


def service_references(plan: Plan) -> dict[str, set[tuple[str, str | None]]]:
    """For each service, the (service, attribute) pairs it uses (attribute None: `host:`)."""
    refs, errors = _collect(plan)
    if errors:
        raise PlanErrors(errors)
    out: dict[str, set[tuple[str, str | None]]] = {name: set() for name in plan.services}
    for ref in refs:
        out[ref.source].add((ref.target, ref.attr))
    return out


def context_uses(plan: Plan) -> dict[str, set[str]]:
    """For each service, the context names (`vars`, `self`, `home`, ...) its templates read.

    The engine starts the run's home share only when some service uses `home`.
    """
    out: dict[str, set[str]] = {name: set() for name in plan.services}
    for scan in _scans(plan):
        out[scan.service.name] |= scan.uses
    return out


def _after_errors(plan: Plan) -> Iterator[PlanError]:
    for spec in plan.services.values():
        for i, dep in enumerate(spec.after):
            at = spec.field_pos.get(f"after[{i}]") or spec.pos_of("after")
            if dep == spec.name:
                yield PlanError(f"service {spec.name!r} cannot come after itself", at.file, at.line)
            elif dep not in plan.services:
                hint = did_you_mean(dep, list(plan.services))
                yield PlanError(
                    f"service {spec.name!r}: unknown service {dep!r} in after{hint}",
                    at.file,
                    at.line,
                )


def _shortest_cycle(sub: nx.DiGraph, order: dict[str, int]) -> list[str]:
    """A shortest cycle of a strongly connected graph, as [a, b, ..., a].

    One breadth-first search per service; ties go to the service written first.
    """
    best: list[str] | None = None
    for start in sorted(sub, key=order.__getitem__):
        paths = nx.single_source_shortest_path(sub, start)
        for back in sorted(sub.predecessors(start), key=order.__getitem__):
            if back in paths:
                cycle = [*paths[back], start]
                if best is None or len(cycle) < len(best):
                    best = cycle
    assert best is not None  # a strongly connected component of 2+ nodes, or a self-loop
    return best


def _cycle_errors(plan: Plan, graph: nx.DiGraph) -> list[PlanError]:
    order = {name: i for i, name in enumerate(plan.services)}
    needs = graph.reverse(copy=False)  # edge a -> b: a needs b
    errors = []
    for scc in sorted(
        nx.strongly_connected_components(needs), key=lambda c: min(order[n] for n in c)
    ):
        if len(scc) == 1 and not needs.has_edge(next(iter(scc)), next(iter(scc))):
            continue
        cycle = _shortest_cycle(needs.subgraph(scc), order)
        spec = plan.services[cycle[0]]
        errors.append(
            PlanError(
                f"dependency cycle: {' -> '.join(cycle)} (each service needs the next)",
                spec.pos.file,
                spec.pos.line,
            )
        )
    return errors


def build_graph(plan: Plan) -> nx.DiGraph:
    """Edge dep -> dependent for every `after:` and reference; raise PlanErrors on any problem."""
    refs, errors = _collect(plan)
    errors = [*_after_errors(plan), *errors]
    if errors:
        raise PlanErrors(errors)
    graph = nx.DiGraph()
    for name, spec in plan.services.items():
        graph.add_node(name, service=spec)
    reasons: dict[tuple[str, str], set[str]] = {}
    for spec in plan.services.values():
        for dep in spec.after:
            reasons.setdefault((dep, spec.name), set()).add("after")
    for ref in refs:
        why = (
            "host"
            if ref.attr is None and ref.target == plan.services[ref.source].host
            else (f"{ref.target}.{ref.attr}" if ref.attr else ref.target)
        )
        reasons.setdefault((ref.target, ref.source), set()).add(why)
    for (dep, dependent), why in reasons.items():
        graph.add_edge(dep, dependent, reasons=sorted(why))
    cycles = _cycle_errors(plan, graph)
    if cycles:
        raise PlanErrors(cycles)
    return graph


def boot_levels(graph: nx.DiGraph) -> list[list[str]]:
    """Services in dependency levels (each level needs only earlier ones), sorted within a level."""
    return [sorted(level) for level in nx.topological_generations(graph)]


def dependencies(graph: nx.DiGraph, service: str) -> list[str]:
    """The services `service` directly needs."""
    return sorted(graph.predecessors(service))

