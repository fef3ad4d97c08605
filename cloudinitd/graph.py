"""The dependency graph of a plan: `after:` plus every reference between services.

References are found by reading the Jinja2 syntax tree of each script
template and env value (`{{ head.address }}`, `{% for c in compute.instances %}`)
and from `host:`. Unknown names and attributes are reported at the template
line where they are written, so a typo fails at load time, not mid-boot.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import networkx as nx
from jinja2 import TemplateSyntaxError, nodes

from cloudinitd.errors import PlanError, PlanErrors
from cloudinitd.paths import display_path
from cloudinitd.plan.model import BUILTIN_ATTRIBUTES, SERVICE_ATTRIBUTES, Plan, Pos, ServiceSpec
from cloudinitd.plan.schema import did_you_mean
from cloudinitd.templates import CONTEXT_NAMES, RAW_ENV, is_template

_DICT_METHODS = frozenset(dir(dict))
_JINJA_LOCALS = frozenset({"loop", "caller", "varargs", "kwargs"})
_GUARD_TESTS = frozenset({"defined", "undefined"})
_GUARD_FILTERS = frozenset({"default", "d"})


@dataclass(frozen=True)
class Reference:
    """`source` uses `target` (attribute `attr`, None for the service itself) at `pos`."""

    source: str
    target: str
    attr: str | None
    pos: Pos


def _bound_names(tree: nodes.Template) -> set[str]:
    """Names the template binds itself (set, loop targets, macro args, imports)."""
    bound = set(_JINJA_LOCALS)
    for name in tree.find_all(nodes.Name):
        if name.ctx in ("store", "param"):
            bound.add(name.name)
    for macro in tree.find_all(nodes.Macro):
        bound.add(macro.name)
    for imp in tree.find_all(nodes.Import):
        bound.add(imp.target)
    for imp in tree.find_all(nodes.FromImport):
        bound.update(n if isinstance(n, str) else n[1] for n in imp.names)
    return bound


def _dotted(node: nodes.Node) -> str | None:
    """`vars.x`, `head.export_dir`: the text of a plain name / attribute chain."""
    if isinstance(node, nodes.Name):
        return node.name
    if isinstance(node, nodes.Getattr):
        base = _dotted(node.node)
        return f"{base}.{node.attr}" if base else None
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        base = _dotted(node.node)
        return f"{base}.{node.arg.value}" if base else None
    return None


def _guarded_names(tree: nodes.Template) -> set[str]:
    """Expressions the template checks itself (`x is defined`, `x | default(...)`).

    Using them elsewhere in the same template is then not an error: the
    author guarded them, as in `{% if vars.x is defined %}{{ vars.x }}{% endif %}`.
    """
    out = set()
    for test in tree.find_all(nodes.Test):
        if test.name in _GUARD_TESTS and (text := _dotted(test.node)):
            out.add(text)
    for filt in tree.find_all(nodes.Filter):
        if filt.name in _GUARD_FILTERS and filt.node is not None and (text := _dotted(filt.node)):
            out.add(text)
    return out


@dataclass
class _Scan:
    """Reads one template of one service; collects references and errors."""

    plan: Plan
    service: ServiceSpec
    file: str
    line_offset: int  # env values: report at the plan line, not the value's own line
    allow_env: bool
    bound: set[str] = field(default_factory=set)
    guarded: set[str] = field(default_factory=set)
    uses: set[str] = field(default_factory=set)  # context names read (vars, home, ...)
    refs: list[Reference] = field(default_factory=list)
    errors: list[PlanError] = field(default_factory=list)

    def pos(self, node: nodes.Node) -> Pos:
        if self.line_offset:
            return Pos(self.file, self.line_offset)
        return Pos(self.file, node.lineno)

    def error(self, node: nodes.Node, message: str) -> None:
        at = self.pos(node)
        self.errors.append(PlanError(message, at.file, at.line))

    # -- walking ---------------------------------------------------------

    def visit(self, node: nodes.Node, loops: dict[str, str], guarded: bool = False) -> None:
        if isinstance(node, nodes.For):
            self.visit(node.iter, loops, guarded)
            inner = dict(loops)
            svc = self.instances_of(node.iter)
            if svc and isinstance(node.target, nodes.Name):
                inner[node.target.name] = svc
            for child in [*node.body, *node.else_, *([node.test] if node.test else [])]:
                self.visit(child, inner, guarded)
            return
        if isinstance(node, nodes.Test) and node.name in _GUARD_TESTS:
            guarded = True
        if isinstance(node, nodes.Filter) and node.name in _GUARD_FILTERS:
            guarded = True
        if isinstance(node, nodes.Getattr | nodes.Getitem | nodes.Name):
            guarded = guarded or _dotted(node) in self.guarded
        if isinstance(node, nodes.Getattr | nodes.Getitem) and self.attribute(node, loops, guarded):
            return
        if isinstance(node, nodes.Name) and node.ctx == "load":
            self.name(node, guarded)
            return
        for child in node.iter_child_nodes():
            self.visit(child, loops, guarded)

    def instances_of(self, node: nodes.Node) -> str | None:
        """The service whose instances `node` is (`svc.instances`, `self.instances`)."""
        if isinstance(node, nodes.Getattr) and node.attr == "instances":
            base = node.node
            if isinstance(base, nodes.Name) and base.name not in self.bound:
                if base.name in self.plan.services:
                    return base.name
                if base.name == "self":
                    return self.service.name
        return None

    def name(self, node: nodes.Name, guarded: bool) -> None:
        name = node.name
        if name in self.bound or name in RAW_ENV.globals:
            return
        if name in self.plan.services:
            self.reference(node, name, None)
            return
        if name == "env" and not self.allow_env:
            self.error(node, "an env value cannot use 'env' (only scripts can)")
            return
        if name in CONTEXT_NAMES:
            return
        if not guarded:
            known = [*self.plan.services, *sorted(CONTEXT_NAMES)]
            self.error(node, f"unknown service or variable {name!r}{did_you_mean(name, known)}")

    def reference(self, node: nodes.Node, target: str, attr: str | None) -> None:
        if target == self.service.name:
            use = f"self.{attr}" if attr else "self"
            written = f"{target}.{attr}" if attr else target
            self.error(node, f"service {target!r} refers to itself as '{written}'; use '{use}'")
            return
        self.refs.append(Reference(self.service.name, target, attr, self.pos(node)))

    def attribute(
        self, node: nodes.Getattr | nodes.Getitem, loops: dict[str, str], guarded: bool
    ) -> bool:
        """Check `base.attr`; True when fully handled (base needs no further visit)."""
        if isinstance(node, nodes.Getattr):
            attr = node.attr
        elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            attr = node.arg.value
        else:
            return False
        base = node.node
        # svc.instances[i].attr / self.instances[i].attr: an instance attribute.
        if isinstance(base, nodes.Getitem) and (svc := self.instances_of(base.node)):
            self.visit(base, loops, guarded)
            self.instance_attr(node, svc, attr, guarded)
            return True
        if not isinstance(base, nodes.Name) or base.ctx != "load":
            return False
        name = base.name
        if name in loops:
            self.instance_attr(node, loops[name], attr, guarded)
            return True
        if name in self.bound:
            return True
        if name in self.plan.services:
            if name != self.service.name and not guarded:
                allowed = BUILTIN_ATTRIBUTES | SERVICE_ATTRIBUTES
                self.check_attr(node, name, attr, allowed)
                self.check_one_instance(node, name, attr)
            self.reference(node, name, attr)
            return True
        if name == "self":
            allowed = BUILTIN_ATTRIBUTES | SERVICE_ATTRIBUTES
            if not guarded:
                self.check_attr(node, self.service.name, attr, allowed, label="self")
            return True
        if name == "vars":
            if not guarded and attr not in self.plan.vars and attr not in _DICT_METHODS:
                hint = did_you_mean(attr, list(self.plan.vars))
                self.error(node, f"unknown variable 'vars.{attr}'{hint}")
            return True
        if name == "env" and self.allow_env:
            if not guarded and attr not in self.service.env and attr not in _DICT_METHODS:
                hint = did_you_mean(attr, list(self.service.env))
                self.error(node, f"service {self.service.name!r} has no env {attr!r}{hint}")
            return True
        return False

    def instance_attr(self, node: nodes.Node, svc: str, attr: str, guarded: bool) -> None:
        """`c.attr` where c is an instance of `svc` (a loop variable or `svc.instances[i]`)."""
        if not guarded:
            self.check_attr(node, svc, attr, BUILTIN_ATTRIBUTES)
        if svc != self.service.name:
            self.refs.append(Reference(self.service.name, svc, attr, self.pos(node)))

    def check_one_instance(self, node: nodes.Node, svc: str, attr: str) -> None:
        """`svc.address` only means something when svc has exactly one instance."""
        spec = self.plan.services[svc]
        if attr in SERVICE_ATTRIBUTES or spec.count == 1 or not (spec.launches or spec.hosts):
            return
        self.error(
            node,
            f"service {svc!r} has {spec.count} instances: use {svc}.instances "
            f"(e.g. a for loop), not '{svc}.{attr}'",
        )

    def check_attr(
        self,
        node: nodes.Node,
        svc: str,
        attr: str,
        allowed: frozenset[str],
        label: str | None = None,
    ) -> None:
        spec = self.plan.services[svc]
        exports = [*spec.exports, *spec.values]  # values read like exports
        if attr in allowed or attr in exports:
            return
        choices = sorted(allowed | set(exports))
        shown = f"{label or svc}.{attr}"
        self.error(
            node,
            f"unknown attribute '{shown}': service {svc!r} has no attribute {attr!r} "
            f"built in or in its exports{did_you_mean(attr, choices)}",
        )


def scan_text(
    plan: Plan, spec: ServiceSpec, text: str, file: str, line_offset: int, allow_env: bool
) -> _Scan:
    """References and errors of one template of one service (env values: at the plan line)."""
    scan = _Scan(plan, spec, file, line_offset, allow_env)
    try:
        tree = RAW_ENV.parse(text)
    except TemplateSyntaxError as exc:
        line = line_offset or exc.lineno
        scan.errors.append(PlanError(f"template syntax error: {exc.message}", file, line))
        return scan
    scan.bound = _bound_names(tree)
    scan.uses = {
        n.name
        for n in tree.find_all(nodes.Name)
        if n.ctx == "load" and n.name in CONTEXT_NAMES and n.name not in scan.bound
    }
    scan.guarded = _guarded_names(tree)
    scan.visit(tree, {})
    return scan


def _scans(plan: Plan) -> Iterator[_Scan]:
    for spec in plan.services.values():
        for script in spec.scripts.values():
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

