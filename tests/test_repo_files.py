"""The project's own files: no merge left half-done.

A conflict block sat in docs/INTERNALS.md for two sessions after a helper's
merge; git, ruff and the tests all let it through (a Markdown file).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# What is not the project's own (the venv, caches, build output: see .gitignore).
NOT_OURS = {".git", ".venv", ".cache", "mutants", "build", "dist", "__pycache__",
            ".pytest_cache", ".ruff_cache", ".hypothesis"}
NL = b"\n"
MARKER = re.compile(rb"^(<{7} |={7}$|>{7} )", re.MULTILINE)


def _own_files() -> list[Path]:
    found = []
    for folder, subfolders, names in os.walk(ROOT):  # not into the venv or the image cache
        subfolders[:] = [d for d in subfolders
                         if d not in NOT_OURS and not d.endswith(".egg-info")]
        found += [Path(folder, n) for n in names if Path(folder, n).is_file()
                  and not Path(folder, n).is_symlink()]
    return found


def test_no_file_of_the_project_holds_a_merge_conflict_marker():
    files = _own_files()
    assert any(p.name == "INTERNALS.md" for p in files) and len(files) > 100
    found = []
    for path in files:
        if path.stat().st_size > 2_000_000:
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:  # binary
            continue
        for m in MARKER.finditer(data):
            found.append(f"{path.relative_to(ROOT)}:{data.count(NL, 0, m.start()) + 1}")
    assert found == []
