"""Command-line features original cloudinit.d users rely on: --var-file, terminate RUN...,
-v logs (tests/test_importer.py covers `import` itself)."""

from __future__ import annotations

from pathlib import Path

from tests.support.cli import Cli, write_plan


def _vars_plan(tmp_path: Path) -> Path:
    return write_plan(tmp_path / "p", """
        name: varsplan
        vars:
          greeting: hi
          flag: "no"
          n: 1
        services:
          a:
            host: 192.0.2.10
            boot: b.sh.j2
        """, {"b.sh.j2": "echo {{ vars.greeting }} {{ vars.flag }} {{ vars.n + 1 }}\n"})


def _rendered(cli: Cli, plan: Path, *args: str) -> str:
    report = cli("boot", plan, "--dry-run", "--json", *args).json()
    return report["instances"][0]["scripts"]["boot"]


def test_var_file_sets_vars_keeps_types_and_var_wins(tmp_path, cli: Cli):
    plan = _vars_plan(tmp_path)
    first = tmp_path / "one.yml"
    first.write_text("greeting: hello world\nflag: 'yes'\nn: 41\n")
    second = tmp_path / "two.yml"
    second.write_text("greeting: from-two\n")
    assert _rendered(cli, plan, "--var-file", first) == "echo 'hello world' yes 42\n"
    # Later files win; --var wins over every file.
    assert _rendered(cli, plan, "--var-file", first, "--var-file", second) \
        == "echo from-two yes 42\n"
    assert _rendered(cli, plan, "--var-file", first, "--var", "n=1") == \
        "echo 'hello world' yes 2\n"


def test_bad_var_file_is_a_located_error(tmp_path, cli: Cli):
    plan = _vars_plan(tmp_path)
    bad = tmp_path / "bad.yml"
    bad.write_text("greeting: ok\nn:\n  - 1\n")
    failed = cli("validate", plan, "--var-file", bad, expect=2)
    assert f"cloudinitd: error: {bad}:2: n: a var is a string, number or boolean" in failed.err
    bad.write_text("- a\n- b\n")
    failed = cli("validate", plan, "--var-file", bad, expect=2)
    assert f"{bad}:1: a var file is a mapping" in failed.err
    failed = cli("validate", plan, "--var-file", tmp_path / "missing.yml", expect=2)
    assert "cannot read" in failed.err and "Traceback" not in failed.err


def test_terminate_several_runs_and_verbose_events(tmp_path, cli: Cli, sshd_hosts):
    host, = sshd_hosts(1)
    out = tmp_path / "out"
    out.mkdir()
    plan = write_plan(tmp_path / "t", f"""
        name: several
        services:
          s:
            host: {host.address}
            ssh_port: {host.port}
            ssh_key: {host.key_path}
            boot: b.sh.j2
            terminate: t.sh.j2
        """, {"b.sh.j2": "true\n", "t.sh.j2": f"echo {{{{ run }}}} >> {out}/terminated\n"})
    booted = cli("-v", "boot", plan, "--name", "sev-1")
    assert "cloudinitd: INFO: cloudinitd.events: sev-1 " in booted.err  # -v: events logged
    cli("boot", plan, "--name", "sev-2")
    done = cli("terminate", "sev-1", "no-such-run", "sev-2", "--json", expect=2).json()
    assert [r["run"] for r in done["runs"]] == ["sev-1", "no-such-run", "sev-2"]
    assert done["ok"] is False and done["runs"][1]["ok"] is False
    assert sorted((out / "terminated").read_text().split()) == ["sev-1", "sev-2"]
    assert cli("terminate", "no-such-run", expect=2).err.startswith("cloudinitd: error: no run")
