"""References in one template of a plan: which services, attributes and context names it
reads, and its unknown names and attributes at the template line where they are written.

Read from the Jinja2 syntax tree (`{{ head.address }}`, `{% for c in
compute.instances %}`), never by rendering. graph.py (split from this) turns
the references of every template of a plan into its dependency graph.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from jinja2 import TemplateSyntaxError, nodes

from cloudinitd.errors import PlanError
from cloudinitd.plan.model import BUILTIN_ATTRIBUTES, SERVICE_ATTRIBUTES, Plan, Pos, ServiceSpec
from cloudinitd.plan.schema import did_you_mean
from cloudinitd.templates import CONTEXT_NAMES, RAW_ENV

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
class Scan:
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


@dataclass(frozen=True)
class _Parsed:
    """What one template text says on its own, whatever plan or service it is in."""

    tree: nodes.Template | None  # None: a syntax error (message, line)
    syntax_error: tuple[str | None, int | None] | None
    bound: frozenset[str]
    guarded: frozenset[str]
    uses: frozenset[str]


# Texts above this are parsed each time: a long-lived process (`serve`) loading many
# untrusted plans must not keep hundreds of large trees.
_CACHED_TEXT_MAX = 64 * 1024


def _parse(text: str) -> _Parsed:
    """Parsed once per distinct text: a plan is scanned at load and again by the converge
    (and for `context_uses`), and 50 services often share one script. Keyed by the text
    itself, so it cannot go stale; the tree is only read (Scan.visit never changes it)."""
    if len(text) > _CACHED_TEXT_MAX:
        return _parse_text(text)
    return _parse_cached(text)


def _parse_text(text: str) -> _Parsed:
    try:
        tree = RAW_ENV.parse(text)
    except TemplateSyntaxError as exc:
        return _Parsed(None, (exc.message, exc.lineno), frozenset(), frozenset(),
                       frozenset())
    bound = _bound_names(tree)
    uses = {
        n.name
        for n in tree.find_all(nodes.Name)
        if n.ctx == "load" and n.name in CONTEXT_NAMES and n.name not in bound
    }
    return _Parsed(tree, None, frozenset(bound), frozenset(_guarded_names(tree)),
                   frozenset(uses))


_parse_cached = functools.lru_cache(maxsize=256)(_parse_text)


def scan_text(
    plan: Plan, spec: ServiceSpec, text: str, file: str, line_offset: int, allow_env: bool
) -> Scan:
    """References and errors of one template of one service (env values: at the plan line)."""
    scan = Scan(plan, spec, file, line_offset, allow_env)
    parsed = _parse(text)
    if parsed.tree is None:
        assert parsed.syntax_error is not None
        message, lineno = parsed.syntax_error
        line = line_offset or lineno
        scan.errors.append(PlanError(f"template syntax error: {message}", file, line))
        return scan
    scan.bound = set(parsed.bound)
    scan.uses = set(parsed.uses)
    scan.guarded = set(parsed.guarded)
    scan.visit(parsed.tree, {})
    return scan
