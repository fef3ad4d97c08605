"""What `boot --dry-run` tells a script writer: sample values and quoting mistakes.

`sample_world(plan)` is the dry run's world with values that look like real
ones (`--show-values`): a port is `8080`, a URL a URL, anything else a few
words, so the rendered script shows how each value arrives (shell-quoted).
`quoted_values(text)` finds `"{{ x }}"`: a value printed inside shell quotes
keeps its own quotes (`"'a b'"`), the mistake `--dry-run` warns about.
Pure: no I/O.
"""

from __future__ import annotations

import re
from typing import Any

from cloudinitd.plan.model import Plan
from cloudinitd.templates import placeholder_extra, placeholder_world

NOTES = [
    "values arrive shell-quoted: write {{ db.url }}, not \"{{ db.url }}\" (the quotes would"
    " stay in the value); {{ x|safe }} inserts a value raw, unquoted",
    "boot scripts run again on scale, repair and reload when their inputs change: make them"
    " idempotent (write a file whole or replace a marked block, as"
    " bootlevels/nfs-client/boot.sh.j2 does with /etc/fstab; never append with >>)",
]
_EXPRESSION = re.compile(r"\{\{(.*?)\}\}")
_RAW = re.compile(r"\|\s*(safe|shquote)\s*$")


def _sample(service: str, attr: str, index: int, address: str) -> str:
    """A value shaped like what the name suggests."""
    name = attr.lower()
    if "port" in name:
        return "8080"
    if "url" in name or "endpoint" in name:
        return f"http://{address}:8080/"
    if name.endswith(("dir", "path", "root")):
        return f"/srv/{service}/{attr}"
    if any(word in name for word in ("pass", "pw", "secret", "token", "key")):
        return f"s3cr3t'{service}{index}"  # a quote inside: what the shell quoting is for
    if "host" in name or "addr" in name:
        return address
    return f"{attr} of {service}-{index}"


def sample_world(plan: Plan) -> dict[str, list[dict[str, Any]]]:
    """`placeholder_world` with realistic exports and values (TEST-NET addresses kept)."""
    world = placeholder_world(plan)
    for name, spec in plan.services.items():
        for item in world[name]:
            for attr in [*spec.exports, *spec.values]:
                item[attr] = _sample(name, attr, item["index"], item["address"])
    return world


def sample_extra() -> dict[str, Any]:
    home = dict(placeholder_extra()["home"])
    home.update(user="alice", dir="/home/alice", port=2222,
                key="-----BEGIN OPENSSH PRIVATE KEY-----\n(sample)\n"
                    "-----END OPENSSH PRIVATE KEY-----\n",
                known_host="[192.0.2.254]:2222 ssh-ed25519 AAAAC3Nza(sample)")
    return {"home": home}


def shown_values(world: dict[str, list[dict[str, Any]]], plan: Plan) -> dict[str, Any]:
    """`svc/i.attr -> value` for every export and value of the world (what was sampled)."""
    out: dict[str, Any] = {}
    for name, spec in plan.services.items():
        for item in world.get(name, []):
            for attr in [*spec.exports, *spec.values]:
                out[f"{name}/{item['index']}.{attr}"] = item.get(attr)
    return out


def quoted_values(text: str) -> list[tuple[int, str]]:
    """(line, expression) of each `{{ x }}` written inside shell quotes, not marked raw.

    A heuristic over each line (quotes counted from its start, backslash escapes
    skipped): good enough for a warning, never an error.
    """
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("#"):
            continue
        for match in _EXPRESSION.finditer(line):
            expr = match.group(1).strip()
            if _RAW.search(expr) or _inside_quotes(line[:match.start()]) is None:
                continue
            found.append((number, expr))
    return found


def _inside_quotes(before: str) -> str | None:
    """The quote character open at the end of `before`, if any."""
    quote = None
    i = 0
    while i < len(before):
        c = before[i]
        if c == "\\" and quote != "'":
            i += 2
            continue
        if quote is None and c in "\"'":
            quote = c
        elif c == quote:
            quote = None
        i += 1
    return quote
