"""Original cloudinit.d launch plans (INI) converted into cloudinitd plans.

`import_plan(top, out)` reads TOP.conf with the original's rules
(`original`), writes `out/plan.yml` and its step scripts (`convert`), and
returns the notes on what it could not map, each with the original
FILE:LINE. Essential ones raise PlanErrors (exit 2).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

from cloudinitd.errors import PlanError, PlanErrors
from cloudinitd.importer.convert import convert_plan
from cloudinitd.importer.original import Note, read_original


def _split(where: str) -> tuple[str, int | None]:
    file, _, line = where.rpartition(":")
    if file and line.isdigit():
        return file, int(line)
    return where, None


def import_plan(top: Path, out: Path, environ: Mapping[str, str] | None = None,
                globals_files: list[Path] | None = None) -> tuple[Path, list[Note]]:
    """Convert; returns (plan.yml path, notes). Raises PlanErrors if something essential fails.

    `globals_files` are the original's `-G FILE`s (a `[globals]` section each)."""
    plan = read_original(Path(top), environ, globals_files)
    if not plan.services:
        raise PlanError("no [svc-*] section in any level file: nothing to convert",
                        str(plan.top), 1)
    path = convert_plan(plan, Path(out), environ)
    essential = [n for n in plan.notes if n.essential]
    if essential:
        raise PlanErrors([PlanError(f"cannot convert: {n.message}", *_split(n.where))
                          for n in essential])
    return path, plan.notes


def import_dir(home: Path, top: Path) -> Path:
    """Where `boot TOP.conf` keeps its converted plan: stable per top file, so a run's
    later commands (status --check, repair) find the plan again."""
    top = Path(top).resolve()
    digest = hashlib.sha256(str(top).encode()).hexdigest()[:12]
    return Path(home) / "imported" / f"{top.stem}-{digest}"
