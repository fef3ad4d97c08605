"""The layer contracts (pyproject.toml [tool.importlinter]) hold, and would catch a breach."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).parent / "lint-imports"


def lint(tree: Path) -> subprocess.CompletedProcess[str]:
    assert LINT.exists(), "lint-imports is missing: pip install -e '.[test]'"
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([str(LINT), "--no-cache"], cwd=tree, env=env, text=True,
                          capture_output=True, timeout=300)


def test_contracts_hold() -> None:
    out = lint(ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout
    # Zero exceptions for the pure core: only the two named provider cycles are ignored.
    assert "imports no effect KEPT" in out.stdout.replace("\n", "")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the package and its contracts, to break on purpose."""
    shutil.copytree(ROOT / "cloudinitd", tmp_path / "cloudinitd",
                    ignore=shutil.ignore_patterns("__pycache__", "data"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _append(path: Path, line: str) -> None:
    path.write_text(path.read_text() + f"\n{line}\n")


@pytest.mark.parametrize("module, effect", [
    ("schedule.py", "cloudinitd.store"),
    ("plan/model.py", "cloudinitd.providers.base"),
    ("templates.py", "cloudinitd.remote.session"),
    ("graph.py", "cloudinitd.engine.context"),
    ("watchpolicy.py", "cloudinitd.engine.maintain"),
    ("sandbox.py", "cloudinitd.host.procs"),
])
def test_core_importing_an_effect_breaks_the_contract(tree: Path, module: str,
                                                      effect: str) -> None:
    _append(tree / "cloudinitd" / module, f"import {effect}  # noqa: E402")
    out = lint(tree)
    assert out.returncode != 0
    assert "imports no effect BROKEN" in out.stdout.replace("\n", "")
    assert effect in out.stdout


def test_provider_importing_the_engine_breaks_the_contract(tree: Path) -> None:
    _append(tree / "cloudinitd" / "providers" / "static.py",
            "from cloudinitd.engine import converge  # noqa: E402")
    out = lint(tree)
    assert out.returncode != 0
    assert "Providers import neither the engine nor the command line BROKEN" in out.stdout
    assert "cloudinitd.providers.static -> cloudinitd.engine.converge" in out.stdout


def test_an_import_cycle_breaks_the_contract(tree: Path) -> None:
    _append(tree / "cloudinitd" / "engine" / "context.py",
            "from cloudinitd.engine import converge  # noqa: E402")
    out = lint(tree)
    assert out.returncode != 0
    assert "No import cycles" in out.stdout and "BROKEN" in out.stdout


def test_host_chores_importing_a_layer_above_break_the_contract(tree: Path) -> None:
    _append(tree / "cloudinitd" / "host" / "locks.py",
            "from cloudinitd.providers import base  # noqa: E402")
    out = lint(tree)
    assert out.returncode != 0
    assert "host chores, never upwards BROKEN" in out.stdout.replace("\n", "")
    assert "cloudinitd.host.locks -> cloudinitd.providers.base" in out.stdout
