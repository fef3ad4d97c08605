"""The command line is thin: these modules parse, call cloudinitd.api and format.

The `thin-cli` import contract (pyproject.toml) forbids them the engine, the
store and the providers; this checks the contract catches a breach, and that
no store or provider call hides behind an object they were handed.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.test_layers import lint

ROOT = Path(__file__).resolve().parents[1]
THIN = ["main.py", "output.py", "plan_commands.py", "run_commands.py", "record_commands.py",
        "use_commands.py", "launch_vm.py"]


@pytest.mark.parametrize("name", THIN)
def test_thin_commands_hold_no_store_or_provider_call(name: str) -> None:
    text = (ROOT / "cloudinitd" / "cli" / name).read_text()
    calls = re.findall(r"\.store\b|get_provider\(|open_run\w*\(|\.provider\(|Store\(", text)
    assert calls == [], f"cli/{name} calls {calls}: move it behind cloudinitd.api"


def test_launch_vm_command_is_under_150_lines() -> None:
    assert len((ROOT / "cloudinitd" / "cli" / "launch_vm.py").read_text().splitlines()) < 150


def test_a_command_importing_the_store_breaks_the_contract(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "cloudinitd", tmp_path / "cloudinitd",
                    ignore=shutil.ignore_patterns("__pycache__", "data"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    module = tmp_path / "cloudinitd" / "cli" / "record_commands.py"
    module.write_text(module.read_text() + "\nfrom cloudinitd.store import Store  # noqa\n")
    out = lint(tmp_path)
    assert out.returncode != 0
    assert "no engine, store or provider import BROKEN" in " ".join(out.stdout.split())
    assert "cloudinitd.cli.record_commands -> cloudinitd.store" in out.stdout
