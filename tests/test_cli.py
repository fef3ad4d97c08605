"""The command-line contract: exit codes, one-line errors, --json, graph output."""

from __future__ import annotations

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
    assert '"b" -> "d" [label=' in dot
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


def test_shipped_plans_validate_by_name_from_anywhere(cli: Cli, tmp_path):
    elsewhere = tmp_path / "elsewhere"  # not the checkout: names resolve to shipped plans
    elsewhere.mkdir()
    for name in ("hello-cluster", "sshfs-vm", "nfs-cluster"):
        data = cli("validate", name, "--json", cwd=elsewhere).json()
        assert data["valid"] is True, name
    assert "no plan 'no-such-plan'" in cli("validate", "no-such-plan", cwd=elsewhere, expect=2).err


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
    assert (out / "booted").exists()
    expires = cli("status", "short-1", "--json").json()["expires"]
    assert expires is not None
    while time.time() <= expires:  # wait for the lease to end, not a fixed time
        time.sleep(0.05)
    cleaned = cli("clean", "--json").json()
    assert cleaned["expired"] == ["short-1"]
    assert (out / "terminated").exists()
    assert cli("status", "short-1", "--json", expect=1).json()["status"] == "terminated"


@pytest.mark.parametrize("name", ["../../x", "bad name/x", "-x", "a" * 64, "a\nb"])
def test_bad_run_names_are_refused_before_anything_is_written(cli: Cli, tmp_path, name):
    # Five local containers would be launched if the name were not checked first.
    plan = write_plan(tmp_path / "p", "services:\n  web:\n    count: 5\n")
    res = cli("boot", plan, "--name", name, expect=2)
    assert res.err.count("\n") == 1 and res.err.startswith("cloudinitd: error: bad run name ")
    assert not cli.home.exists()
    assert not (tmp_path / "x").exists() and not (tmp_path.parent / "x").exists()
    if name not in ("../../x", "-x"):
        return  # every command, for two names (the generated suite covers the rest in-process)
    # `--` so that a name starting with '-' is the RUN argument, not an option.
    for argv in (["status", "--", name], ["terminate", "--", name], ["clean", "--", name],
                 ["logs", "--", name], ["scale", "--", name, "web", "1"],
                 ["reload", plan, "--name", name]):
        res = cli(*argv, expect=2)
        assert res.err.startswith("cloudinitd: error: bad run name "), argv
        assert res.err.count("\n") == 1
    assert not cli.home.exists()


def test_unknown_var_and_max_instances_flag(cli: Cli, tmp_path):
    plan = write_plan(tmp_path / "p", """
        vars: {nodes: 2}
        services:
          web:
            count: "{{ vars.nodes }}"
    """)
    res = cli("validate", plan, "--var", "node=3", expect=2)
    assert res.err == (f"cloudinitd: error: {plan}:1: --var node: the plan has no var 'node'"
                       " (did you mean 'nodes'?)\n")
    res = cli("validate", plan, "--var", "nodes=1500", expect=2)
    assert "count 1500 is above the limit of 1000 instances per service" in res.err
    cli("validate", plan, "--var", "nodes=1500", "--max-instances", "1500")
    cli("validate", plan, "--var", "nodes=1500", env={"CLOUDINITD_MAX_INSTANCES": "1500"})


def test_sandbox_escape_in_script_and_env_runs_nothing_in_dry_run(cli: Cli, tmp_path):
    marker = tmp_path / "X"
    payload = f"{{{{ cycler.__init__.__globals__.os.system('touch {marker}') }}}}"
    plan = write_plan(tmp_path / "p", """
        services:
          a:
            boot: s.sh.j2
    """, {"s.sh.j2": f"echo hi\n{payload}\n"})
    res = cli("boot", "--dry-run", plan, expect=2)
    assert res.err.count("\n") == 1 and ":2: not allowed in a template" in res.err
    plan = write_plan(tmp_path / "q", f"""
        services:
          a:
            env:
              E: "{payload}"
    """)
    res = cli("boot", "--dry-run", plan, expect=2)
    assert res.err.startswith(f"cloudinitd: error: {plan}:4: not allowed in a template")
    assert not marker.exists()


def test_templated_host_is_rendered_before_ssh(tmp_path, cli: Cli, sshd_hosts):
    # The address comes from a var (overridden on the command line); SSH must get the
    # rendered address, not the template text.
    (host,) = sshd_hosts(1)
    out = tmp_path / "out"
    out.mkdir()
    plan = write_plan(tmp_path / "p", f"""
        vars: {{addr: 192.0.2.1}}
        services:
          one:
            host: "{{{{ vars.addr }}}}"
            ssh_port: {host.port}
            ssh_key: {host.key_path}
            timeout: 30s
            boot: b.sh.j2
    """, {"b.sh.j2": f"echo {{{{ self.address }}}} > {out}/booted\n"})
    cli("boot", plan, "--name", "tpl-host-1", "--var", f"addr={host.address}", "-q")
    assert (out / "booted").read_text() == f"{host.address}\n"
    data = cli("status", "tpl-host-1", "--json").json()
    assert data["services"]["one"]["instances"][0]["address"] == host.address
    cli("terminate", "tpl-host-1", "-q")
