"""The engine end to end on real OpenSSH servers (static hosts on 127.0.0.x).

Every host here shares this machine's filesystem, so scripts leave their
evidence in a folder the test owns (`vars.out`) and the test reads it back.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import Cli, write_plan


def _host_block(name: str, host, extra: str = "") -> str:
    return (f"  {name}:\n    host: {host.address}\n    ssh_port: {host.port}\n"
            f"    ssh_key: {host.key_path}\n{extra}")


def chain_plan(tmp_path: Path, hosts, out: Path) -> Path:
    db, web, check = hosts
    text = (
        "name: chain\n"
        f"vars:\n  out: {out}\n"
        "services:\n"
        + _host_block("db", db, "    boot: db.sh.j2\n    exports: [token, evil]\n"
                      "    terminate: term.sh.j2\n")
        + _host_block("web", web, "    boot: web.sh.j2\n    exports: [url]\n"
                      "    terminate: term.sh.j2\n")
        + _host_block("check", check, "    after: [web]\n    boot: check.sh.j2\n"
                      "    ready: ready.sh.j2\n    terminate: term.sh.j2\n")
    )
    scripts = {
        "db.sh.j2": """
            #!/bin/sh
            set -e
            cat > "$CLOUDINITD_EXPORT" <<'EOF'
            {"token": "tok-123", "evil": "'; rm -rf /; '"}
            EOF
            """,
        "web.sh.j2": """
            set -e
            printf '%s\\n' {{ db.token }} > {{ vars.out }}/web-token
            printf '%s\\n' {{ db.evil }} > {{ vars.out }}/web-evil
            echo "url=http://{{ self.address|safe }}:8080/" > "$CLOUDINITD_EXPORT"
            """,
        "check.sh.j2": """
            set -e
            echo {{ web.url }} > {{ vars.out }}/check-url
            echo {{ db.address }} > {{ vars.out }}/check-db-address
            """,
        "ready.sh.j2": """
            n=$(cat {{ vars.out }}/ready-count 2>/dev/null || echo 0)
            n=$((n + 1))
            echo $n > {{ vars.out }}/ready-count
            [ "$n" -ge 3 ]
            """,
        "term.sh.j2": """
            echo {{ self.name }} >> {{ vars.out }}/terminated
            """,
    }
    return write_plan(tmp_path / "chain", text, scripts)


def test_attributes_flow_ready_retries_and_terminate_order(tmp_path, cli: Cli, sshd_hosts):
    out = tmp_path / "out"
    out.mkdir()
    plan = chain_plan(tmp_path, sshd_hosts(3), out)

    booted = cli("boot", plan, "--name", "chain-1", "--json").json()
    assert booted["run"] == "chain-1" and booted["ok"] is True

    assert (out / "web-token").read_text() == "tok-123\n"
    # The hostile value arrives intact and harmless: printed, not executed.
    assert (out / "web-evil").read_text() == "'; rm -rf /; '\n"
    assert (out / "check-url").read_text().startswith("http://127.0.")
    assert (out / "ready-count").read_text().strip() == "3"  # succeeded on its third try

    status = cli("status", "chain-1", "--json").json()
    assert status["status"] == "ready"
    assert status["services"]["db"]["instances"][0]["attributes"]["evil"] == "'; rm -rf /; '"
    assert all(s["status"] == "ready" for s in status["services"].values())

    done = cli("terminate", "chain-1", "--json").json()
    assert done["ok"] is True
    # Dependents first: check (level 2) before web (level 1) before db (level 0).
    assert (out / "terminated").read_text().split() == ["check", "web", "db"]
    # History and logs outlive the instances.
    assert "==> " in cli("logs", "chain-1", "web").out
    assert len(cli("history", "chain-1", "--json").json()["instances"]) == 3
    assert cli("status", "chain-1", "--json", expect=1).json()["status"] == "terminated"


def test_failure_stops_dependents_siblings_finish_then_repair(tmp_path, cli: Cli, sshd_hosts):
    out = tmp_path / "out"
    out.mkdir()
    a, b, c = sshd_hosts(3)
    text = (
        f"name: fails\nvars:\n  out: {out}\nservices:\n"
        + _host_block("broken", a, "    boot: broken.sh.j2\n")
        + _host_block("needs_broken", b, "    after: [broken]\n    boot: mark.sh.j2\n")
        + _host_block("sibling", c, "    boot: slow.sh.j2\n")
    )
    plan = write_plan(tmp_path / "fails", text, {
        "broken.sh.j2": """
            echo "preparing the frobnicator"
            if [ ! -e {{ vars.out }}/fixed ]; then
              echo "frobnicator exploded" >&2
              exit 3
            fi
            """,
        "mark.sh.j2": "touch {{ vars.out }}/{{ self.name }}\n",
        "slow.sh.j2": "sleep 2; touch {{ vars.out }}/{{ self.name }}\n",
    })

    failed = cli("boot", plan, "--name", "fails-1", expect=1)
    assert "broken failed at step boot" in failed.err
    assert "frobnicator exploded" in failed.err  # the log tail is shown
    assert "Traceback" not in failed.err
    assert not (out / "needs_broken").exists()  # dependent never ran
    assert (out / "sibling").exists()  # independent branch finished
    status = cli("status", "fails-1", "--json", expect=1).json()
    assert status["services"]["broken"]["status"] == "failed"
    assert status["services"]["needs_broken"]["status"] == "skipped"
    assert status["services"]["sibling"]["status"] == "ready"
    logs = cli("logs", "fails-1", "broken").out
    assert "preparing the frobnicator" in logs

    (out / "fixed").touch()
    (out / "sibling").unlink()
    repaired = cli("repair", "fails-1", "--json").json()
    assert repaired["ok"] is True
    assert (out / "needs_broken").exists()
    assert not (out / "sibling").exists()  # healthy and unchanged: not re-run
    assert cli("status", "fails-1", "--json").json()["status"] == "ready"
    cli("terminate", "fails-1")


def test_waits_for_a_host_that_refuses_ssh_at_first(tmp_path, cli: Cli, delayed_sshd):
    out = tmp_path / "out"
    out.mkdir()
    late = delayed_sshd(2)  # turns the engine away twice before sshd starts
    plan = write_plan(tmp_path / "late", (
        f"name: late\nvars:\n  out: {out}\nservices:\n"
        + _host_block("late", late, "    boot: boot.sh.j2\n    timeout: 60s\n")
    ), {"boot.sh.j2": "touch {{ vars.out }}/booted\n"})
    cli("boot", plan, "--name", "late-1")
    assert late.refused == 2
    assert (out / "booted").exists()
    history = cli("history", "late-1", "--json").json()
    assert any(e["kind"] == "ready" for e in history["events"])
    cli("terminate", "late-1")


def test_reload_reconfigures_only_what_changed(tmp_path, cli: Cli, sshd_hosts):
    out = tmp_path / "out"
    out.mkdir()
    a, b, c = sshd_hosts(3)
    text = (
        f"name: inputs\nvars:\n  out: {out}\n  v: one\nservices:\n"
        + _host_block("source", a, "    boot: source.sh.j2\n    exports: [value]\n")
        + _host_block("sink", b, "    boot: sink.sh.j2\n")
        + _host_block("bystander", c, "    boot: bystander.sh.j2\n")
    )
    plan = write_plan(tmp_path / "inputs", text, {
        "source.sh.j2": "echo value={{ vars.v }}-exported > \"$CLOUDINITD_EXPORT\"\n",
        "sink.sh.j2": "echo {{ source.value }} >> {{ vars.out }}/sink-saw\n",
        "bystander.sh.j2": "echo ran >> {{ vars.out }}/bystander\n",
    })
    cli("boot", plan, "--name", "inputs-1")
    assert (out / "sink-saw").read_text() == "one-exported\n"

    cli("repair", "inputs-1")  # nothing changed: nothing re-runs
    assert (out / "sink-saw").read_text() == "one-exported\n"

    # A new var changes the source's script; its new export changes the sink's input.
    cli("reload", plan, "--name", "inputs-1", "--var", "v=two")
    assert (out / "sink-saw").read_text() == "one-exported\ntwo-exported\n"
    assert (out / "bystander").read_text() == "ran\n"
    cli("terminate", "inputs-1")


def test_dry_run_renders_every_script_and_launches_nothing(tmp_path, cli: Cli, sshd_hosts):
    out = tmp_path / "out"
    out.mkdir()
    plan = chain_plan(tmp_path, sshd_hosts(3), out)
    report = cli("boot", plan, "--dry-run", "--json").json()
    assert report["levels"] == [["db"], ["web"], ["check"]]
    scripts = {(i["service"], step): text for i in report["instances"]
               for step, text in i["scripts"].items()}
    assert "<db.token>" in scripts[("web", "boot")] or "db.token" in scripts[("web", "boot")]
    assert list(out.iterdir()) == []  # nothing ran anywhere
    assert cli("list", "--json").json() == []
    text = cli("boot", plan, "--dry-run").out
    assert "configure check" in text and "--- web-0 boot" in text


def test_store_is_private_and_holds_no_run_key(tmp_path, cli: Cli, sshd_hosts):
    out = tmp_path / "out"
    out.mkdir()
    plan = chain_plan(tmp_path, sshd_hosts(3), out)
    cli("boot", plan, "--name", "priv-1")
    db = cli.home / "state.db"
    assert db.stat().st_mode & 0o777 == 0o600
    key = (cli.home / "runs" / "priv-1" / "id_ed25519")
    assert key.stat().st_mode & 0o777 == 0o600
    assert b"PRIVATE KEY" not in db.read_bytes()
    listed = cli("list", "--json")
    assert [(r["name"], r["status"], r["live_instances"]) for r in listed.json()] == [
        ("priv-1", "ready", 3)]
    assert "PRIVATE KEY" not in listed.out
    cli("terminate", "priv-1")


@pytest.mark.parametrize("args", [["status", "nope"], ["terminate", "nope"],
                                  ["scale", "nope", "x", "2"]])
def test_unknown_run_is_a_usage_error(cli: Cli, args):
    res = cli(*args, expect=2)
    assert "no run named 'nope'" in res.err and "Traceback" not in res.err


def test_exports_are_data_never_identity(tmp_path, cli: Cli, sshd_hosts):
    """A boot script cannot pose as another machine: built-in names are refused, undeclared
    keys are dropped, and what dependents see of a machine is what cloudinitd knows of it."""
    from cloudinitd.engine.context import open_run
    from cloudinitd.store import Store

    out = tmp_path / "out"
    out.mkdir()
    db, web = sshd_hosts(2)
    text = (
        f"name: ident\nvars:\n  out: {out}\nservices:\n"
        + _host_block("db", db, "    boot: db.sh.j2\n    exports: [token]\n")
        + _host_block("web", web, "    boot: web.sh.j2\n")
    )
    plan = write_plan(tmp_path / "ident", text, {
        "db.sh.j2": """
            if [ -e {{ vars.out }}/honest ]; then
              printf 'token=t1\\nundeclared=u1\\n' > "$CLOUDINITD_EXPORT"
            else
              printf 'token=t1\\naddress=6.6.6.6\\n' > "$CLOUDINITD_EXPORT"
            fi
            """,
        "web.sh.j2": "echo {{ db.address }} {{ db.token }} > {{ vars.out }}/web-sees\n",
    })

    failed = cli("boot", plan, "--name", "ident-1", expect=1)
    assert "db failed at step boot" in failed.err
    assert "address" in failed.err and "built-in" in failed.err
    assert not (out / "web-sees").exists()  # the dependent never saw the forged address
    store = Store(cli.home)
    assert store.attributes("ident-1") == {}

    (out / "honest").touch()
    cli("repair", "ident-1")
    assert (out / "web-sees").read_text() == f"{db.address} t1\n"
    # Only declared exports are stored; the undeclared one is named in a warning.
    assert store.attributes("ident-1") == {("db", 0): {"token": "t1"}}
    warnings = [e.message for e in store.events("ident-1") if e.kind == "warning"]
    assert any("undeclared" in m for m in warnings), warnings

    # Even a record that holds a built-in name (an older store) cannot override it.
    store.set_attributes("ident-1", "db", 0, {"address": "6.6.6.6", "cloud": "evil"})
    world = open_run(cli.home, store, "ident-1").world()
    assert world["db"][0]["address"] == db.address
    assert world["db"][0]["cloud"] == "static"
    assert world["db"][0]["token"] == "t1"
    cli("terminate", "ident-1")
