"""Per-module summary of mutmut's cached results (`make mutate` prints it).

mutmut keeps one `<module>.py.meta` JSON file per mutated module under
mutants/, mapping each mutant to the exit code of its test run. This reads
them and prints killed / survived / no tests / timeout per module, and the
killed share of the mutants that were checked. Run from the checkout root:

    python -m tests.support.mutation_report [mutants]
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

KILLED = {1, 3, 37}  # a failing test, a pytest internal error, the type checker
SURVIVED = {0}
NO_TESTS = {5, 33}
TIMEOUT = {24, -24, 36, 152, 255}


def summarise(meta: Path) -> Counter:
    codes = json.loads(meta.read_text())["exit_code_by_key"].values()
    counts: Counter = Counter()
    for code in codes:
        if code is None:
            counts["not checked"] += 1
        elif code in KILLED:
            counts["killed"] += 1
        elif code in SURVIVED:
            counts["survived"] += 1
        elif code in NO_TESTS:
            counts["no tests"] += 1
        elif code in TIMEOUT:
            counts["timeout"] += 1  # a mutant that hangs the tests is caught too
        else:
            counts["suspicious"] += 1
    return counts


def main(root: str = "mutants") -> int:
    metas = sorted(Path(root).rglob("*.py.meta"))
    if not metas:
        print(f"no results under {root}/: run `make mutate` first", file=sys.stderr)
        return 1
    cols = ["killed", "timeout", "survived", "no tests", "not checked", "suspicious"]
    print(f"{'module':<34}" + "".join(f"{c:>12}" for c in cols) + f"{'score':>8}")
    total: Counter = Counter()
    for meta in metas:
        counts = summarise(meta)
        if not sum(counts.values()):
            continue
        total += counts
        print(_row(str(meta.relative_to(root))[: -len(".py.meta")], counts, cols))
    print(_row("TOTAL", total, cols))
    return 0


def _row(name: str, counts: Counter, cols: list[str]) -> str:
    caught = counts["killed"] + counts["timeout"]
    checked = caught + counts["survived"] + counts["no tests"]
    score = f"{100 * caught / checked:.0f}%" if checked else "-"
    return f"{name:<34}" + "".join(f"{counts[c]:>12}" for c in cols) + f"{score:>8}"


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
