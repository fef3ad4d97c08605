"""The command-line contract: exit codes, one-line errors, --json, graph output."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from tests.support.cli import Cli, write_plan
from tests.test_plan_loader import expected_errors

PLANS = Path(__file__).parent / "plans"
BAD = sorted((PLANS / "bad").glob("*.yml"))


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_bad_plans_exit_2_with_file_line_and_no_traceback(cli: Cli, path: Path, monkeypatch):
    monkeypatch.chdir(PLANS.parent.parent)
    res = cli("validate", path, expect=2)
    assert "Traceback" not in res.err
    # The expectations name files relative to tests/plans; the CLI runs from the checkout.
    errors = [line.removeprefix("cloudinitd: error: ").replace("tests/plans/", "")
              for line in res.err.splitlines()]
    assert errors == expected_errors(path)
    # `boot` refuses the same plan before launching anything.
    assert cli("boot", path, expect=2).err.count("Traceback") == 0
    assert not (cli.home / "runs").exists() or list((cli.home / "runs").iterdir()) == []


def test_diamond_graph_levels_text_json_dot(cli: Cli, tmp_path):
    diamond = PLANS / "good" / "diamond.yml"
    text = cli("graph", diamond).out
    assert text.splitlines()[0].startswith("level 0: a")
    assert "level 2: d (after b, c)" in text
    data = cli("graph", diamond, "--json").json()
    assert data["levels"] == [["a"], ["b", "c"], ["d"]]
    assert ["a", "b"] in data["edges"]
    dot = cli("graph", diamond, "--format", "dot").out
    assert '"b" -> "d";' in dot
    if shutil.which("dot"):
        out = tmp_path / "g.svg"
        cli("graph", diamond, "--format", "svg", "-o", out)
        assert out.read_text().lstrip().startswith(("<?xml", "<svg"))
    else:
        pytest.fail("graphviz `dot` missing: apt-get install graphviz")


def test_validate_json_and_var_override(cli: Cli):
    data = cli("validate", PLANS / "good" / "diamond.yml", "--json").json()
    assert data["valid"] is True and data["levels"][0] == ["a"]
    res = cli("validate", PLANS / "good" / "diamond.yml", "--var", "novalue", expect=2)
    assert "--var takes KEY=VALUE" in res.err


def test_unknown_command_and_option_are_usage_errors(cli: Cli):
    assert cli("frobnicate", expect=2).code == 2
    assert cli("boot", "--no-such-flag", expect=2).code == 2


def test_shipped_plans_validate_by_name_from_anywhere(cli: Cli, tmp_path, monkeypatch):
    for name in ("hello-cluster", "sshfs-vm", "nfs-cluster"):
        data = cli("validate", name, "--json").json()
        assert data["valid"] is True, name


def test_lifetime_expires_and_clean_terminates(tmp_path, cli: Cli, sshd_hosts):
    (host,) = sshd_hosts(1)
    out = tmp_path / "out"
    out.mkdir()
    plan = write_plan(tmp_path / "short", f"""
        name: short
        lifetime: 1s
        services:
          one:
            host: {host.address}
            ssh_port: {host.port}
            ssh_key: {host.key_path}
            boot: b.sh.j2
            terminate: t.sh.j2
        """, {"b.sh.j2": f"touch {out}/booted\n", "t.sh.j2": f"touch {out}/terminated\n"})
    cli("boot", plan, "--name", "short-1")
    assert cli("status", "short-1", "--json").json()["expires"] is not None
    time.sleep(1.5)
    cleaned = cli("clean", "--json").json()
    assert cleaned["expired"] == ["short-1"]
    assert (out / "terminated").exists()
    assert cli("status", "short-1", "--json", expect=1).json()["status"] == "terminated"
    json.dumps(cleaned)
