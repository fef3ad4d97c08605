"""The step scripts a converted plan runs around the original programs.

The program (a file, or a `.tar.gz` holding `NAME/run.sh`) ships as the
step's `files:`, so it lands beside the script in the step's private folder
(the original's stage directory), where the script writes `bootconf.json`
(and `bootenv.sh`) and runs it with the step's `args:`. After the boot
program, a `bootout.json` it left becomes the service's exports. Values in
the script are Jinja expressions, which the renderer shell-quotes; arguments
are passed one word each: nothing from a value is run.
"""

from __future__ import annotations

import re
import shlex
import string
from pathlib import Path

from cloudinitd.importer.original import OrigService
from cloudinitd.importer.refs import RefError, Refs, literal
from cloudinitd.plan.limits import MAX_SCRIPT_BYTES, FileRefused, read_checked

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


def step_script(svc: OrigService, step: str, refs: Refs, program_name: str
                ) -> tuple[str, list[str]]:
    """The `.sh.j2` text of one step and its `args:` (templates, one argument each).

    The program travels as the step's `files:` entry `program_name`, beside the
    script in the step's private folder, where the script runs it."""
    key = {"boot": "bootpgm", "ready": "readypgm", "terminate": "terminatepgm"}[step]
    name = program_name
    lines = ["#!/bin/sh",
             f"# Made by `cloudinitd import`: the {key} of [svc-{svc.name}], run from this"
             " step's folder (the original's stage directory).",
             "set -e"]
    if name.endswith(".tar.gz"):
        lines.append(f"tar -xzf {shlex.quote(name)}")
        run = f"./{name[: -len('.tar.gz')]}/run.sh"
    else:
        run = f"./{name}"
    lines.append(f"chmod +x {shlex.quote(run)}")
    if step == "boot" and "bootconf" in svc.paths:
        path = svc.paths["bootconf"]
        try:  # checked when the plan was read; again on the opened file (it may have changed)
            text = read_checked(path, MAX_SCRIPT_BYTES).decode("utf-8", errors="replace")
        except FileRefused as e:
            raise RefError(f"bootconf: file {path} {e.problem}", "bootconf") from None
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
        raise RefError(f"{key}_args: cannot split into words: {e}", f"{key}_args") from None
    argv = [refs.template(t, svc) for t in tokens]
    lines += ["set +e", f'{shlex.quote(run)} "$@"', "rc=$?"]
    if step == "boot":
        lines.append('if [ "$rc" -eq 0 ] && [ -f bootout.json ]; then'
                     ' cp bootout.json "$CLOUDINITD_EXPORT"; fi')
    lines.append('exit "$rc"')
    return "\n".join(lines) + "\n", argv


def program_name(program: Path) -> str:
    return program.name if _SAFE_NAME.match(program.name) else "program"
