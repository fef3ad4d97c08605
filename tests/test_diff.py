"""`cloudinitd diff PLAN --name RUN` and `reload --dry-run`: what a reload would do.

Real runs: static services on real OpenSSH servers on 127.0.0.x, and a local
(LXC) run for counts; the diff must name exactly what changed and launch,
write or start nothing.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.support.cli import Cli, write_plan

DB_BOOT = """
    echo '{"token": "tok-1"}' > "$CLOUDINITD_EXPORT"
    """
WEB_BOOT = """
    echo "token {{ db.token }} greeting {{ vars.greeting }}" > web.txt
    """


def _store_rows(home: Path) -> list[str]:
    """Every row of every table of the store (what a write would change)."""
    db = sqlite3.connect(home / "state.db")
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'"
                                           " AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        return [f"{t}: {row}" for t in tables for row in db.execute(f'SELECT * FROM "{t}"')]
    finally:
        db.close()


def _static_plan(folder: Path, hosts, web_boot: str = WEB_BOOT, db_boot: str = DB_BOOT) -> Path:
    db, web = hosts
    text = f"""
        name: duo
        vars: {{greeting: hello}}
        services:
          db:
            host: {db.address}
            ssh_port: {db.port}
            ssh_key: {db.key_path}
            boot: db.sh.j2
            exports: [token]
          web:
            host: {web.address}
            ssh_port: {web.port}
            ssh_key: {web.key_path}
            boot: web.sh.j2
        """
    return write_plan(folder, text, {"db.sh.j2": db_boot, "web.sh.j2": web_boot})


@pytest.fixture
def duo(tmp_path: Path, cli: Cli, sshd_hosts):
    hosts = sshd_hosts(2)
    plan = _static_plan(tmp_path / "plan", hosts)
    cli("boot", plan, "--name", "duo", "-q")
    return plan, hosts


def test_diff_of_an_unchanged_plan_says_no_changes(cli: Cli, duo):
    plan, _ = duo
    before = _store_rows(cli.home)
    text = cli("diff", plan, "--name", "duo").out
    assert "no changes" in text and "0 to launch, 0 to terminate, 0 to re-configure" in text
    data = cli("diff", plan, "--name", "duo", "--json").json()
    assert data["changes"] is False and data["launches"] == 0
    assert _store_rows(cli.home) == before


def test_diff_names_the_edited_script_and_the_changed_var_only(cli: Cli, duo):
    plan, hosts = duo
    _static_plan(plan.parent, hosts, web_boot=WEB_BOOT + "echo more >> web.txt\n")
    before = _store_rows(cli.home)
    data = cli("diff", plan, "--name", "duo", "--json").json()
    web, db = data["services"]["web"], data["services"]["db"]
    assert [r["why"] for r in web["reconfigure"]] == [["script:boot"]]
    assert db["state"] == "unchanged" and db["reconfigure"] == []
    assert data["launches"] == data["terminates"] == 0

    # A new --var value: the var is named, not the script (restored first).
    _static_plan(plan.parent, hosts)
    data = cli("diff", plan, "--name", "duo", "--var", "greeting=bye", "--json").json()
    assert [r["why"] for r in data["services"]["web"]["reconfigure"]] == [["vars.greeting"]]
    text = cli("reload", plan, "--name", "duo", "--var", "greeting=bye", "--dry-run").out
    assert "~ re-configure web/0: var greeting" in text and "db" not in text.split("\n", 1)[1]
    assert _store_rows(cli.home) == before


def test_diff_of_a_dependency_marks_readers_as_possible_and_shows_scripts(cli: Cli, duo):
    plan, hosts = duo
    _static_plan(plan.parent, hosts, db_boot=DB_BOOT.replace("tok-1", "tok-2"))
    before = _store_rows(cli.home)
    out = cli("diff", plan, "--name", "duo", "--scripts").out
    assert "~ re-configure db/0: boot script text" in out
    # web reads db.token: known only after db's new boot, so a "may".
    assert "? may re-configure web/0: db.token if its new boot changes it" in out
    # The rendered scripts' unified diff: the recorded template's line, then the new one.
    assert "-echo '{\"token\": \"tok-1\"}'" in out and "+echo '{\"token\": \"tok-2\"}'" in out
    assert "1 to re-configure" in out
    assert _store_rows(cli.home) == before
    # And the reload does what the diff said: db booted again, web re-ran as its token changed.
    cli("reload", plan, "--name", "duo", "-q")
    status = cli("status", "duo", "--json").json()
    assert status["services"]["db"]["instances"][0]["attributes"] == {"token": "tok-2"}
    assert cli("diff", plan, "--name", "duo", "--json").json()["changes"] is False


def test_diff_of_an_unknown_run_exits_2(cli: Cli, tmp_path: Path, duo):
    plan, _ = duo
    wrong = cli("diff", plan, "--name", "nope", expect=2)
    assert "no run named 'nope'" in wrong.err and "duo" in wrong.err
    assert "Traceback" not in wrong.err


@pytest.mark.lxc
@pytest.mark.slow
def test_diff_after_editing_a_count_and_a_script_launches_nothing(local_cli: Cli, tmp_path):
    cli = local_cli
    text = """
        name: grow
        vars: {n: 1}
        services:
          app:
            count: "{{ vars.n }}"
            boot: app.sh
          lb:
            boot: lb.sh.j2
        """
    lb = "{% for a in app.instances %}echo {{ a.address }}{% endfor %} > /root/lb.txt\n"
    plan = write_plan(tmp_path / "plan", text, {"app.sh": "echo one > /root/app.txt\n",
                                                "lb.sh.j2": lb})
    cli("boot", plan, "--name", "grow", "-q")
    cli("scale", "grow", "app", "3", "-q")
    containers = sorted(p.name for p in (cli.home / "local" / "containers").iterdir())
    before = _store_rows(cli.home)
    # The edit: the plan's count becomes 2 (below the scale override of 3), a new script.
    write_plan(tmp_path / "plan", text.replace("n: 1", "n: 2"),
               {"app.sh": "echo two > /root/app.txt\n", "lb.sh.j2": lb})

    data = cli("diff", plan, "--name", "grow", "--json").json()
    app, lbd = data["services"]["app"], data["services"]["lb"]
    assert (app["count_before"], app["count_after"]) == (3, 2)
    assert app["removed"] == {"local": [2]} and app["added"] == {}
    assert app["dropped_scale_override"] == 3
    assert [(r["index"], r["why"]) for r in app["reconfigure"]] == [
        (0, ["script:boot"]), (1, ["script:boot"])]
    # lb loops over app's instances: one fewer address, so it re-runs, and says why.
    assert [(r["index"], r["why"]) for r in lbd["reconfigure"]] == [
        (0, ["app.address", "app.instances"])]
    assert (data["launches"], data["terminates"]) == (0, 1)
    text_out = cli("reload", plan, "--name", "grow", "--dry-run").out
    assert "- terminate app/2 on local" in text_out
    assert "scale override 3 dropped (the plan's count 2 applies)" in text_out
    assert "~ re-configure app/0: boot script text" in text_out
    # A bigger count through --var: one instance to launch, on the plan's cloud.
    more = cli("diff", plan, "--name", "grow", "--var", "n=4", "--json").json()
    assert more["services"]["app"]["added"] == {"local": [3]} and more["launches"] == 1
    # Nothing launched, nothing written.
    assert sorted(p.name for p in (cli.home / "local" / "containers").iterdir()) == containers
    assert _store_rows(cli.home) == before

    cli("reload", plan, "--name", "grow", "-q")
    assert len(cli("status", "grow", "--json").json()["services"]["app"]["instances"]) == 2
    assert cli("diff", plan, "--name", "grow", "--json").json()["changes"] is False
    cli("terminate", "grow", "-q")


def test_diff_of_a_plan_using_home_starts_no_share(tmp_path: Path, cli: Cli, sshd_hosts):
    from cloudinitd.homeshare import share_pid, stop_home_share

    host, = sshd_hosts(1)
    plan = write_plan(tmp_path / "plan", f"""
        services:
          box:
            host: {host.address}
            ssh_port: {host.port}
            ssh_key: {host.key_path}
            boot: box.sh.j2
        """, {"box.sh.j2": "echo {{ home.host }} {{ home.port }} {{ home.user }} > home.txt\n"
                           "echo {{ home.key }} > key\n"})
    share = tmp_path / "shared"
    share.mkdir()
    home_vars = ["--var", "home_listen=127.0.0.1", "--var", f"home_dir={share}"]
    cli("boot", plan, "--name", "homed", "-q", *home_vars)
    run_dir = cli.home / "runs" / "homed"
    assert share_pid(run_dir) is not None
    assert stop_home_share(run_dir)
    before = _store_rows(cli.home)
    data = cli("diff", plan, "--name", "homed", "--json").json()
    # Rendered with the share as recorded: the same inputs, so nothing to re-configure,
    # and no sshd was started to find that out.
    assert data["changes"] is False, data
    assert share_pid(run_dir) is None
    assert _store_rows(cli.home) == before
    # A rendered-script diff shows the change but never the share's private key.
    write_plan(plan.parent, plan.read_text(), {"box.sh.j2": (
        "echo {{ home.host }} {{ home.port }} > home.txt\necho {{ home.key }} > key\n")})
    shown = cli("diff", plan, "--name", "homed", "--scripts")
    assert "~ re-configure box/0: boot script text" in shown.out
    assert "-echo" in shown.out and "+echo" in shown.out and "<home.key: not shown>" in shown.out
    private = (run_dir / "homeshare" / "home_key").read_text().splitlines()[1]
    assert private not in shown.out + shown.err
    assert share_pid(run_dir) is None
