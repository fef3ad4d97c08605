"""The project's own tracked files: no merge left half-done.

A conflict block sat in docs/INTERNALS.md for two sessions after a helper's
merge; git, ruff and the tests all let it through (a Markdown file).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NL = b"\n"
MARKER = re.compile(rb"^(<{7} |={7}$|>{7} )", re.MULTILINE)


def test_no_tracked_file_holds_a_merge_conflict_marker():
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True,
                            check=True).stdout.split(b"\0")
    assert len(listed) > 100  # a checkout, not an empty listing
    found = []
    for name in filter(None, listed):
        path = ROOT / name.decode()
        if not path.is_file() or path.stat().st_size > 2_000_000:
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:  # binary
            continue
        for m in MARKER.finditer(data):
            found.append(f"{name.decode()}:{data.count(NL, 0, m.start()) + 1}")
    assert found == []
