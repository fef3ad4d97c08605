"""Per-module summary of mutmut's cached results (`make mutate` prints it).

mutmut keeps one `<module>.py.meta` JSON file per mutated module under
mutants/, mapping each mutant to the exit code of its test run. This reads
them and prints killed / survived / no tests / timeout per module, and the
killed share of the mutants that were checked: `raw` over all of them,
`score` without the survivors docs/mutation-survivors.md lists as
equivalent (no input can tell them from the original code). `unlisted`
counts the survivors that file does not list at all: each one is a gap to
close with a test or to list with its reason. A listed name that is no longer
a survivor (killed since, or renumbered after the code changed) is printed
after the table as stale: take it out of the list. Run from the checkout root:

    python -m tests.support.mutation_report [mutants] [docs/mutation-survivors.md]
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path

KILLED = {1, 3, 37}  # a failing test, a pytest internal error, the type checker
SURVIVED = {0}
NO_TESTS = {5, 33}
TIMEOUT = {24, -24, 36, 152, 255}
_SECTION = re.compile(r"^## (\S+)\.py\s*$")
_FULL = re.compile(r"^(x\S*?__mutmut_)(\d+)$")
_SHORT = re.compile(r"^_(\d+)$")


def listed_survivors(doc: Path) -> dict[str, bool]:
    """Mutant name -> listed as equivalent (True) or left on purpose (False).

    A table row under `## store.py` names mutants in its first cell:
    `x_name__mutmut_4`, then `_7` (same function), `_14` .. `_18` (a range).
    The row is an equivalent one when its last cell starts with "equivalent".
    """
    out: dict[str, bool] = {}
    if not doc.exists():
        return out
    module = None
    for line in doc.read_text().splitlines():
        section = _SECTION.match(line)
        if section:
            module = "cloudinitd." + section.group(1).replace("/", ".")
            continue
        if module is None or not line.startswith("| `"):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        equivalent = cells[-1].startswith("equivalent")
        prefix, last = None, None
        parts = re.findall(r"`([^`]+)`|(\.\.)", cells[0])
        ranged = False
        for name, dots in parts:
            if dots:
                ranged = True
                continue
            full, short = _FULL.match(name), _SHORT.match(name)
            if full:
                prefix, number = full.group(1), int(full.group(2))
            elif short and prefix:
                number = int(short.group(1))
            else:
                continue
            numbers = range(last + 1, number + 1) if ranged and last is not None else [number]
            for n in numbers:
                out[f"{module}.{prefix}{n}"] = equivalent
            last, ranged = number, False
    return out


def summarise(meta: Path, listed: dict[str, bool] | None = None) -> Counter:
    listed = listed or {}
    codes = json.loads(meta.read_text())["exit_code_by_key"]
    counts: Counter = Counter()
    for name, code in codes.items():
        if code is None:
            counts["not checked"] += 1
        elif code in KILLED:
            counts["killed"] += 1
        elif code in SURVIVED or code in NO_TESTS:
            counts["survived" if code in SURVIVED else "no tests"] += 1
            if listed.get(name):
                counts["equivalent"] += 1
            elif name not in listed:
                counts["unlisted"] += 1
        elif code in TIMEOUT:
            counts["timeout"] += 1  # a mutant that hangs the tests is caught too
        else:
            counts["suspicious"] += 1
    return counts


def stale_listed(metas: list[Path], root: Path, listed: dict[str, bool]) -> list[str]:
    """Listed names of measured modules that are not survivors now, in list order.

    Only modules with results count, and mutants not checked yet are left alone:
    a name is stale when its module's results lack it (mutmut renumbered the
    function's mutants, or the function went) or when a test now kills it.
    """
    codes: dict[str, dict[str, int | None]] = {}
    for meta in metas:
        module = str(meta.relative_to(root))[: -len(".py.meta")].replace("/", ".")
        codes[module] = json.loads(meta.read_text())["exit_code_by_key"]
    stale = []
    for name in listed:
        module = name.rsplit(".", 1)[0]
        if module not in codes:
            continue
        code = codes[module].get(name, "absent")
        if code == "absent" or code in KILLED or code in TIMEOUT:
            stale.append(name)
    return stale


def main(root: str = "mutants", doc: str = "docs/mutation-survivors.md") -> int:
    metas = sorted(Path(root).rglob("*.py.meta"))
    if not metas:
        print(f"no results under {root}/: run `make mutate` first", file=sys.stderr)
        return 1
    listed = listed_survivors(Path(doc))
    cols = ["killed", "timeout", "survived", "no tests", "equivalent", "unlisted", "not checked",
            "suspicious"]
    print(f"{'module':<30}" + "".join(f"{c:>12}" for c in cols) + f"{'raw':>6}{'score':>7}")
    total: Counter = Counter()
    for meta in metas:
        counts = summarise(meta, listed)
        if not sum(counts.values()):
            continue
        total += counts
        print(_row(str(meta.relative_to(root))[: -len(".py.meta")], counts, cols))
    print(_row("TOTAL", total, cols))
    stale = stale_listed(metas, Path(root), listed)
    if stale:
        print(f"stale: {len(stale)} name(s) in {doc} are not survivors now (killed, or"
              " renumbered after a change): take them out")
        for name in stale:
            print(f"  {name}")
    return 0


def _row(name: str, counts: Counter, cols: list[str]) -> str:
    caught = counts["killed"] + counts["timeout"]
    checked = caught + counts["survived"] + counts["no tests"]
    raw = f"{100 * caught / checked:.0f}%" if checked else "-"
    real = checked - counts["equivalent"]
    score = f"{100 * caught / real:.0f}%" if real else "-"
    return (f"{name:<30}" + "".join(f"{counts[c]:>12}" for c in cols)
            + f"{raw:>6}{score:>7}")


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
