"""Hundreds of hostile plans and command lines (tests/support/badplans.py), each must:
exit 2, print only one-line `cloudinitd: error:` messages with FILE:LINE when the
fault is in a file, show no traceback, leave no side effect, and stay under
10 s and 500 MB.

Cases run in-process in a forked child (cloudinitd is imported once, by this
process), with an address-space limit and an alarm, so a case that hangs or
eats memory is stopped and reported instead of taking the machine down. A
few cases also run through the real console script.
"""

from __future__ import annotations

import importlib
import os
import re
import resource
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.badplans import MARKER, Case, all_cases
from tests.support.cli import Cli
from tests.support.hostile import make_special

# Imported once here, so each forked case starts with cloudinitd loaded (as a fork server would).
for _module in ("cloudinitd.cli.main", "cloudinitd.engine.boot", "cloudinitd.engine.context",
                "cloudinitd.engine.maintain", "cloudinitd.engine.terminate",
                "cloudinitd.plan.loader"):
    importlib.import_module(_module)

CASES = all_cases()
LIMIT_SECONDS = 10
LIMIT_BYTES = 500 * 1024 * 1024
TRACEBACK_EXIT = 99
_LINE = re.compile(r"^cloudinitd: error: (?P<rest>.*)$")


@dataclass
class Outcome:
    code: int | None  # None: killed by a signal
    signal: int | None
    out: str
    err: str
    seconds: float
    max_rss: int  # bytes


def _vm_size() -> int:
    for row in Path("/proc/self/status").read_text().splitlines():
        if row.startswith("VmSize:"):
            return int(row.split()[1]) * 1024
    return 0


def run_forked(argv: list[str], folder: Path, home: Path) -> Outcome:
    """`cloudinitd ARGV` in a forked child of this process, in `folder`."""
    out_path, err_path = folder / ".stdout", folder / ".stderr"
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = TRACEBACK_EXIT
        try:
            os.chdir(folder)
            os.environ["CLOUDINITD_HOME"] = str(home)
            os.environ.pop("CLOUDINITD_MAX_INSTANCES", None)
            # Room for what the parent already maps plus the case's own 500 MB.
            limit = _vm_size() + LIMIT_BYTES
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
            signal.alarm(LIMIT_SECONDS)
            sys.stdout = open(out_path, "w")  # noqa: SIM115 (closed by _exit's flush below)
            sys.stderr = open(err_path, "w")  # noqa: SIM115
            sys.stdin = open(os.devnull)  # noqa: SIM115
            sys.argv = ["cloudinitd", *argv]
            from cloudinitd.cli.main import main

            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:  # noqa: BLE001 (reported as a traceback, the thing we test for)
            traceback.print_exc()
            code = TRACEBACK_EXIT
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    _, status, usage = os.wait4(pid, 0)
    seconds = time.monotonic() - started
    code = os.waitstatus_to_exitcode(status)
    return Outcome(
        code=code if code >= 0 else None,
        signal=-code if code < 0 else None,
        out=out_path.read_text(errors="replace") if out_path.exists() else "",
        err=err_path.read_text(errors="replace") if err_path.exists() else "",
        seconds=seconds,
        max_rss=usage.ru_maxrss * 1024,
    )


def write_case(case: Case, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in case.files.items():
        (folder / name).write_bytes(data)
    for name, kind in case.special.items():
        make_special(folder / name, kind)


def check(case: Case, res: Outcome, folder: Path, home: Path) -> list[str]:
    """Every broken promise for one case (empty when it was handled right)."""
    problems = []
    if res.signal is not None:
        problems.append(f"killed by signal {res.signal} after {res.seconds:.1f}s")
    if res.code != 2:
        problems.append(f"exit {res.code}, expected 2")
    if "Traceback" in res.err or "Traceback" in res.out:
        problems.append("traceback")
    if res.seconds > LIMIT_SECONDS:
        problems.append(f"took {res.seconds:.1f}s")
    if res.max_rss > LIMIT_BYTES:
        problems.append(f"used {res.max_rss // 2**20} MB")
    lines = res.err.splitlines()
    if not lines:
        problems.append("no error message")
    for line in lines:
        m = _LINE.match(line)
        if not m:
            problems.append(f"not a one-line error: {line[:200]!r}")
            continue
        if case.located:  # FILE:LINE, FILE as given or as an absolute path (the importer)
            where = f"{case.located}:{case.line if case.line else ''}"
            line_re = str(case.line) if case.line else r"\d+"
            if not re.match(rf"(?:/\S*/)?{re.escape(case.located)}:{line_re}: ", m["rest"]):
                problems.append(f"not located at {where}: {line[:200]!r}")
    if case.located is None and len(lines) != 1:
        problems.append(f"{len(lines)} error lines for a command-line fault")
    for name in case.absent:
        if (folder / name).exists():
            problems.append(f"wrote {name}")
    if (folder / MARKER).exists():
        problems.append("the payload ran: PWNED was created")
    if home.exists() and any(home.iterdir()):
        problems.append(f"wrote under $CLOUDINITD_HOME: {sorted(p.name for p in home.iterdir())}")
    return problems


def test_the_generator_makes_enough_distinct_cases():
    assert len(CASES) >= 500
    kinds = {c.kind for c in CASES}
    assert {"wrong type", "unknown key", "alias bomb", "deep nesting", "control byte",
            "non-UTF-8", "sandbox", "huge count", "huge file", "cycle", "run name",
            "var", "hostile file name"} <= kinds
    assert len({(tuple(sorted(c.files.items())), tuple(sorted(c.special.items())),
                 tuple(c.argv)) for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_hostile_input_is_refused_cleanly(case: Case, tmp_path: Path):
    folder, home = tmp_path / "case", tmp_path / "home"
    write_case(case, folder)
    res = run_forked(case.argv, folder, home)
    problems = check(case, res, folder, home)
    assert not problems, f"{case.id}: {problems}\n--- stderr\n{res.err[:2000]}"


REAL = ["count-escape0", "boot-escape0", "env-escape0", "laughs-vars-9x10", "deep-flow-list-10000",
        "utf8-2-line3", "control-00-line3", "runname-boot-0", "runname-status-1",
        "cycle-after-50", "count-1e9", "long-script-path", "file-hosts-file-fifo",
        "file-original-deps-devzero", "file-var-file-fifo"]


@pytest.mark.parametrize("case_id", REAL)
def test_through_the_console_script(case_id: str, tmp_path: Path, monkeypatch):
    (case,) = [c for c in CASES if c.id == case_id]
    folder, home = tmp_path / "case", tmp_path / "home"
    write_case(case, folder)
    monkeypatch.chdir(folder)
    started = time.monotonic()
    res = Cli(home)(*case.argv, expect=None, timeout=60)
    seconds = time.monotonic() - started
    outcome = Outcome(res.code, None, res.out, res.err, seconds, 0)
    problems = check(case, outcome, folder, home)
    assert not problems, f"{case.id}: {problems}\n--- stderr\n{res.err[:2000]}"
