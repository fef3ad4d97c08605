"""What one instance's configuration was made of, piece by piece, for `diff` to explain.

`repair` knows *that* an instance must be re-configured (its boot hash
changed); `diff` says *why*: the boot script's text, an env value, a
dependency's address or export, a var. Each piece is kept as a keyed digest
(HMAC with a key derived from the run's own private key), never as text: an
env value may be a password, and a plain hash of one short value could be
guessed back. `input_parts` and `changed_parts` are pure; `input_key` and
`keep_source` read and write the run's folder.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from pathlib import Path
from typing import Any

from cloudinitd.host.files import write_private
from cloudinitd.plan.model import ServiceSpec

World = dict[str, list[dict[str, Any]]]
_SELF_USE = re.compile(r"\bself\s*\.\s*(count|instances)\b")
_VAR_USE = re.compile(r"\bvars\s*(?:\.\s*([A-Za-z_]\w*)|\[\s*['\"]([A-Za-z_]\w*)['\"]\s*\])")


def input_key(run_dir: Path) -> bytes:
    """The digest key of a run: derived from its private key (read only; empty if none)."""
    try:
        return hashlib.sha256(b"cloudinitd-inputs\0" + (run_dir / "id_ed25519").read_bytes()
                              ).digest()
    except OSError:
        return b""


def _digest(key: bytes, value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str).encode()
    return hmac.new(key, text, hashlib.sha256).hexdigest()[:32]


def _texts(svc: ServiceSpec) -> list[str]:
    texts = [s.source for s in svc.scripts.values()]
    texts += [a for s in svc.scripts.values() for a in s.args]
    return texts + [*svc.env.values(), *svc.values.values()]


def vars_used(svc: ServiceSpec) -> set[str]:
    """Plan vars a service's templates name (`vars.x`, `vars['x']`)."""
    return {a or b for text in _texts(svc) for a, b in _VAR_USE.findall(text)}


def input_parts(svc: ServiceSpec, reads: set[tuple[str, str | None]], plan_vars: dict[str, Any],
                world: World, script: str | None, env: dict[str, str], argv: list[str],
                key: bytes) -> dict[str, str]:
    """Digests of each input of one instance's boot, by a name `diff` shows.

    `script:STEP` the step's template text (and its args and files), `env.K` a
    rendered env value, `args` the rendered arguments, `SVC.ATTR` what the
    service reads of a dependency (`SVC.address` over its instances, `SVC.instances`
    which instances there are), `self.instances` its own service's instances (when it
    reads `self.count` or `self.instances`), `vars.X` a var, `rendered` the boot script.
    """
    parts: dict[str, str] = {}
    for step, spec in svc.scripts.items():
        parts[f"script:{step}"] = _digest(key, [spec.source, spec.args,
                                               [p.name for p in spec.files]])
    for name, value in env.items():
        parts[f"env.{name}"] = _digest(key, value)
    if argv:
        parts["args"] = _digest(key, argv)
    for target, attr in sorted(reads, key=lambda r: (r[0], r[1] or "")):
        items = sorted(world.get(target, []), key=lambda i: i.get("index", 0))
        if attr in (None, "instances", "count"):
            value = [(i.get("index"), i.get("address")) for i in items]
            label = f"{target}.{attr or 'address'}"
        else:
            value = [i.get(attr) for i in items]
            label = f"{target}.{attr}"
        parts[label] = _digest(key, value)
    if any(_SELF_USE.search(text) for text in _texts(svc)):  # its own siblings
        own = sorted(world.get(svc.name, []), key=lambda i: i.get("index", 0))
        parts["self.instances"] = _digest(key, [(i.get("index"), i.get("address"))
                                                for i in own])
    for name in sorted(vars_used(svc)):
        if name in plan_vars:
            parts[f"vars.{name}"] = _digest(key, plan_vars[name])
    if script is not None:
        parts["rendered"] = _digest(key, script)
    return parts


def keep_source(run_dir: Path, text: str) -> str:
    """Keep a boot template's text in the run's folder (0600, by its hash); the hash.

    The plan's own file, copied: `diff --scripts` renders the old side from it
    after the plan was edited in place.
    """
    name = hashlib.sha256(text.encode()).hexdigest()[:32]
    folder = run_dir / "sources"
    path = folder / name
    if not path.exists():
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_private(path, text)
    return name


def kept_source(run_dir: Path, name: str | None) -> str | None:
    if not name or not re.fullmatch(r"[0-9a-f]{32}", name):
        return None
    try:
        return (run_dir / "sources" / name).read_text()
    except OSError:
        return None


def changed_parts(old: dict[str, str] | None, new: dict[str, str]) -> list[str]:
    """The names of the inputs that differ; `rendered` only when nothing else explains it."""
    if old is None:
        return []
    names = sorted(k for k in set(old) | set(new)
                   if old.get(k) != new.get(k) and not k.startswith("source:"))
    explained = [n for n in names if n != "rendered"]
    return explained or names
