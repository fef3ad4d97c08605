"""The original's `${svc.attr}` placeholders as Jinja expressions of a cloudinitd plan.

`${svc.attr}`, `${.attr}` (the service itself) and `${global.key}` are
resolved at conversion time as far as the plan says: a deps value is
inlined (translated in its owner's context, as the original re-expanded it
there); `hostname`, `instance_id` and `run_name` become the run's built-in
attributes; any other attribute of a service must come from its
`bootout.json`, so it becomes an export the service promises.
Literal text is a Jinja string literal: a plan's `{{` stays text.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from cloudinitd.importer.original import OrigPlan, OrigService
from cloudinitd.plan.model import BUILTIN_ATTRIBUTES, SERVICE_ATTRIBUTES

PLACEHOLDER = re.compile(r"\$\{(.*?)\.(.*?)\}")
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_REPLICA = re.compile(r"^(.*)-(\d+)$")
# Attributes the original kept in its database: the service's own settings.
_COLUMNS = {"image": "image", "iaas": "iaas", "iaas_url": "iaas_url",
            "allocation": "allocation", "username": "ssh_username",
            "scp_username": "scp_username", "keyname": "sshkeyname",
            "localkey": "localsshkeypath", "bootconf": "bootconf", "bootpgm": "bootpgm",
            "bootpgm_args": "bootpgm_args", "readypgm": "readypgm",
            "readypgm_args": "readypgm_args", "terminatepgm": "terminatepgm",
            "terminatepgm_args": "terminatepgm_args", "pgm_timeout": "pgm_timeout"}
_SECRET_COLUMNS = ("iaas_key", "iaas_secret")


class RefError(Exception):
    """A placeholder that cannot be expressed (the caller adds FILE:LINE of `key`)."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


def literal(text: str) -> str:
    return json.dumps(text)


def is_value_name(key: str) -> bool:
    """A deps key that can be a `values:` name (others are inlined where read)."""
    return bool(IDENTIFIER.match(key)) and key not in BUILTIN_ATTRIBUTES \
        and key not in SERVICE_ATTRIBUTES


_JINJA = re.compile(r"\{[{%#]|[}%#]\}")


def _as_part(expr: str) -> tuple[bool, str]:
    """An inlined value that is plain text stays text (`6543`, not `{{ "6543" }}`)."""
    if expr.startswith('"') and expr.endswith('"'):
        try:
            value = json.loads(expr)
        except ValueError:
            return True, expr
        if isinstance(value, str):
            return False, value
    return True, expr


def _join_expr(parts: list[tuple[bool, str]]) -> str:
    items = [p if is_expr else literal(p) for is_expr, p in parts]
    return items[0] if len(items) == 1 else "(" + " ~ ".join(items) + ")"


def _join_template(parts: list[tuple[bool, str]]) -> str:
    """Template text; literal text that Jinja would read as syntax goes in as a string."""
    out = []
    for is_expr, p in parts:
        if is_expr:
            out.append(f"{{{{ {p} }}}}")
        elif _JINJA.search(p) or p.endswith(("{", "}", "%", "#")) or p.startswith(("}", "%",
                                                                                    "#")):
            out.append(f"{{{{ {literal(p)} }}}}")
        else:
            out.append(p)
    return "".join(out)


@dataclass
class Refs:
    plan: OrigPlan
    names: dict[str, str]  # original service name -> plan service name
    reads: dict[str, set[str]] = field(default_factory=dict)  # reader -> services it reads
    exports: dict[str, set[str]] = field(default_factory=dict)  # service -> bootout attrs
    globals_used: set[str] = field(default_factory=set)

    def expr(self, text: str, owner: OrigService) -> str:
        """A Jinja expression for `text` read by `owner` (a boot/ready/terminate step)."""
        return _join_expr(self._parts(text, owner, "self", owner.name, ()))

    def template(self, text: str, owner: OrigService) -> str:
        """`text` as a template (literal text, `{{ expr }}` for each placeholder)."""
        return _join_template(self._parts(text, owner, "self", owner.name, ()))

    def _expr(self, text: str, ctx: OrigService, base: str, reader: str,
              seen: tuple[tuple[str, str], ...]) -> str:
        return _join_expr(self._parts(text, ctx, base, reader, seen))

    def _parts(self, text: str, ctx: OrigService, base: str, reader: str,
               seen: tuple[tuple[str, str], ...]) -> list[tuple[bool, str]]:
        """(is_expression, text) pieces of `text` in order."""
        parts: list[tuple[bool, str]] = []
        pos = 0
        for m in PLACEHOLDER.finditer(text):
            if m.start() > pos:
                parts.append((False, text[pos:m.start()]))
            expr = self._one(m.group(1), m.group(2), ctx, base, reader, seen)
            parts.append(_as_part(expr))
            pos = m.end()
        if pos < len(text) or not parts:
            parts.append((False, text[pos:]))
        return parts

    def _target(self, svc: str, ctx: OrigService, base: str) -> tuple[OrigService, str]:
        if svc == "":
            return ctx, base
        if svc in self.plan.services:
            target = self.plan.services[svc]
            if target.count > 1:
                raise RefError(f"${{{svc}...}}: {svc} has {target.count} replicas; the original"
                               f" named them {svc}-0 ... {svc}-{target.count - 1}")
            return target, self.names[svc]
        m = _REPLICA.match(svc)
        if m and m.group(1) in self.plan.services:
            target = self.plan.services[m.group(1)]
            index = int(m.group(2))
            if target.count > 1 and index < target.count:
                return target, f"{self.names[target.name]}.instances[{index}]"
        raise RefError(f"${{{svc}.…}}: no service named {svc!r} in this plan")

    def _one(self, svc: str, attr: str, ctx: OrigService, base: str, reader: str,
             seen: tuple[tuple[str, str], ...]) -> str:
        if svc == "global":
            if attr not in self.plan.globals:
                raise RefError(f"${{global.{attr}}}: no [globals] value {attr!r} in the top file")
            self.globals_used.add(attr)
            return f"vars.{attr}" if IDENTIFIER.match(attr) else f"vars[{literal(attr)}]"
        target, tbase = self._target(svc, ctx, base)
        if target.name != reader:
            self.reads.setdefault(reader, set()).add(self.names[target.name])
        if attr == "hostname":
            return f"{tbase}.address"
        if attr == "instance_id":
            return f"{tbase}.instance_id"
        if attr == "run_name":
            return "run"
        if attr in target.deps and is_value_name(attr) and target.name != ctx.name:
            # Another service's deps value: its `values:` entry, read like an export.
            return f"{tbase}.{attr}"
        if attr in target.deps:
            key = (target.name, attr)
            if key in seen:
                raise RefError(f"${{{svc}.{attr}}}: deps values refer to each other in a loop")
            return self._expr(target.deps[attr].text, target, tbase, reader, (*seen, key))
        if attr in _SECRET_COLUMNS:
            raise RefError(f"${{{svc}.{attr}}}: a credential is never put into a script")
        if attr in _COLUMNS:
            return literal(target.get(_COLUMNS[attr]) or "")
        if not IDENTIFIER.match(attr):
            raise RefError(f"${{{svc}.{attr}}}: {attr!r} cannot be an exported attribute name")
        self.exports.setdefault(self.names[target.name], set()).add(attr)
        return f"{tbase}.{attr}"

    def static(self, text: str) -> str:
        """`text` with `${global.x}` replaced now (for fields that are not templates)."""
        def sub(m: re.Match[str]) -> str:
            if m.group(1) != "global":
                raise RefError(f"{m.group(0)}: only ${{global.x}} can be used here")
            if m.group(2) not in self.plan.globals:
                raise RefError(f"{m.group(0)}: no [globals] value {m.group(2)!r}")
            return self.plan.globals[m.group(2)].text
        return PLACEHOLDER.sub(sub, text)
