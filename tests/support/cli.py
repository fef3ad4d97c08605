"""Running the real `cloudinitd` console script as a user would, and writing test plans."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

BIN = Path(sys.executable).parent


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


class Cli:
    """`cli("boot", plan, "--json")` runs `cloudinitd` with this test's $CLOUDINITD_HOME."""

    def __init__(self, home: Path, env: dict[str, str] | None = None):
        self.home = home
        self.env = {**os.environ, "CLOUDINITD_HOME": str(home), **(env or {})}

    def __call__(self, *args: str | Path, expect: int | None = 0, timeout: float = 600,
                 program: str = "cloudinitd", env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> Result:
        proc = subprocess.run([str(BIN / program), *map(str, args)], capture_output=True,
                              text=True, timeout=timeout, env={**self.env, **(env or {})},
                              stdin=subprocess.DEVNULL, cwd=cwd)
        result = Result(proc.returncode, proc.stdout, proc.stderr)
        if expect is not None and proc.returncode != expect:
            raise AssertionError(f"cloudinitd {' '.join(map(str, args))} exited {proc.returncode},"
                                 f" expected {expect}\n--- stdout\n{proc.stdout}\n--- stderr\n"
                                 f"{proc.stderr}")
        return result


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    home = tmp_path / "home"
    return Cli(home)


def write_plan(folder: Path, text: str, scripts: dict[str, str] | None = None,
               name: str = "plan.yml") -> Path:
    """A plan file plus its script templates, dedented."""
    folder.mkdir(parents=True, exist_ok=True)
    for rel, body in (scripts or {}).items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(body).lstrip())
    plan = folder / name
    plan.write_text(textwrap.dedent(text).lstrip())
    return plan
