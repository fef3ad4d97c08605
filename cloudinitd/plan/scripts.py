"""Finding and reading the boot / ready / terminate scripts a plan names.

A script path resolves relative to the plan file first, then in the shipped
`bootlevels/` library. Every problem (not found, a path the file system
refuses, a file too large or not UTF-8) is a PlanError at a plan or script line.
"""

from __future__ import annotations

import os
from pathlib import Path

from cloudinitd.errors import PlanError
from cloudinitd.paths import display_path, shipped_dir
from cloudinitd.plan.limits import read_text
from cloudinitd.plan.model import Pos, ScriptSpec


def resolve_script(plan_path: Path, service: str, step: str, ref: str, at: Pos,
                   max_bytes: int) -> ScriptSpec:
    """The script `ref` of `service`'s `step`, read; PlanError at `at` (or in the script)."""

    def fail(message: str) -> PlanError:
        return PlanError(f"service {service!r}: {message}", at.file, at.line)

    try:
        given = Path(os.path.expanduser(ref))
    except (ValueError, RuntimeError) as exc:  # an unknown ~user
        raise fail(f"bad {step} script path: {exc}") from None
    if given.is_absolute():
        candidates = [given]
    else:
        candidates = [plan_path.parent / given, shipped_dir("bootlevels") / given]
    for path in candidates:
        try:
            found = path.is_file()
        except (OSError, ValueError) as exc:  # a name too long, a NUL byte
            raise fail(f"bad {step} script path: {getattr(exc, 'strerror', None) or exc}") \
                from None
        if not found:
            continue
        try:
            source = read_text(path, max_bytes, display_path(path))
            resolved = path.resolve()
        except OSError as exc:
            raise fail(f"cannot read {step} script {ref!r}: {exc.strerror or exc}") from None
        return ScriptSpec(ref=ref, path=resolved, source=source, pos=at)
    looked = " and ".join(f"{display_path(p.parent)}/" for p in candidates)
    raise fail(f"{step} script {ref!r} not found (looked in {looked})")
