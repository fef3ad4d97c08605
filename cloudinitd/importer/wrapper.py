"""The step scripts a converted plan runs: the original program, shipped inside.

Each script unpacks the service's program (a file, or a `.tar.gz` holding
`NAME/run.sh`) into `stage/` of the run's private directory on the host,
writes `bootconf.json` (and `bootenv.sh`) there, and runs the program with
its arguments from `stage/`, as the original did from its stage directory.
After the boot program, a `bootout.json` it left becomes the service's
exports. Every argument and substituted value is a Jinja expression, which
the renderer shell-quotes: nothing from a value is run.
"""

from __future__ import annotations

import base64
import re
import shlex
import string
from pathlib import Path

from cloudinitd.importer.original import OrigService
from cloudinitd.importer.refs import RefError, Refs, literal

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,100}$")
_BOOTENV = """\
if command -v python3 >/dev/null 2>&1; then
python3 - <<'CLOUDINITD_PY' || true
import json
try:
    doc = json.load(open("bootconf.json"))
except Exception:
    raise SystemExit(0)
if isinstance(doc, dict):
    with open("bootenv.sh", "w") as f:
        for k, v in doc.items():
            f.write('export %s="%s"\\n' % (k, v))
CLOUDINITD_PY
fi
"""


def bootconf_parts(text: str, svc: OrigService, refs: Refs) -> list[str]:
    """`string.Template` over the service's deps values, as Jinja expressions in order."""
    parts: list[str] = []
    pos = 0
    for m in string.Template.pattern.finditer(text):
        parts.append(literal(text[pos:m.start()]))
        pos = m.end()
        if m.group("escaped") is not None:
            parts.append(literal("$"))
            continue
        key = m.group("named") or m.group("braced")
        if key is None:
            line = text.count("\n", 0, m.start()) + 1
            raise RefError(f"bootconf line {line}: a lone '$' (write $$ for a dollar sign)",
                           "bootconf")
        if key not in svc.deps:
            raise RefError(f"bootconf: ${key} is not one of this service's deps values"
                           f" ({', '.join(sorted(svc.deps)) or 'it has none'})", "bootconf")
        parts.append(refs.expr(svc.deps[key].text, svc))
    parts.append(literal(text[pos:]))
    return [p for p in parts if p != '""']


def step_script(svc: OrigService, step: str, refs: Refs) -> str:
    """The `.sh.j2` text of one step (step: boot, ready or terminate)."""
    key = {"boot": "bootpgm", "ready": "readypgm", "terminate": "terminatepgm"}[step]
    program = svc.paths[key]
    name = program.name if _SAFE_NAME.match(program.name) else "program"
    lines = ["#!/bin/sh",
             f"# Made by `cloudinitd import` from {svc.where_of(key)}: the {key} of"
             f" [svc-{svc.name}].",
             "set -e", "mkdir -p stage", "cd stage"]
    lines += _unpack(program, name)
    if name.endswith(".tar.gz"):
        lines.append(f"tar -xzf {shlex.quote(name)}")
        run = f"./{name[: -len('.tar.gz')]}/run.sh"
        lines.append(f"chmod +x {shlex.quote(run)}")
    else:
        run = f"./{name}"
    if step == "boot" and "bootconf" in svc.paths:
        text = svc.paths["bootconf"].read_text(encoding="utf-8", errors="replace")
        try:
            parts = bootconf_parts(text, svc, refs)
        except RefError as e:
            raise RefError(str(e), e.key or "bootconf") from None
        lines.append("printf '%s' " + " ".join(f"{{{{ {p} }}}}" for p in parts)
                     + " > bootconf.json" if parts else ": > bootconf.json")
        lines.append(_BOOTENV.rstrip("\n"))
    args = svc.get(f"{key}_args") or ""
    try:
        tokens = shlex.split(args)
    except ValueError as e:
        raise RefError(f"{key}_args: cannot split into words: {e}") from None
    argv = " ".join(f"{{{{ {refs.expr(t, svc)} }}}}" for t in tokens)
    lines += ["set +e", f"{shlex.quote(run)} {argv}".rstrip(), "rc=$?"]
    if step == "boot":
        lines.append('if [ "$rc" -eq 0 ] && [ -f bootout.json ]; then'
                     ' cp bootout.json "$CLOUDINITD_EXPORT"; fi')
    lines.append('exit "$rc"')
    return "\n".join(lines) + "\n"


def _unpack(program: Path, name: str) -> list[str]:
    data = base64.encodebytes(program.read_bytes()).decode().rstrip("\n")
    return [f"base64 -d > {shlex.quote(name)} <<'CLOUDINITD_PROGRAM'", data,
            "CLOUDINITD_PROGRAM", f"chmod 0755 {shlex.quote(name)}"]
