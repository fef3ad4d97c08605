"""After boot: ssh, exec, output, status/list/history formatting, schema, completion.

Against real OpenSSH servers on 127.0.0.x (static services) and the real
`cloudinitd` console script; `ssh` runs the system OpenSSH client.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.cli import BIN, Cli, write_plan


def _plan(tmp_path: Path, hosts, names: list[str], extra: dict[str, str] | None = None,
          scripts: dict[str, str] | None = None) -> Path:
    text = "name: use\nservices:\n"
    for name, host in zip(names, hosts, strict=True):
        text += (f"  {name}:\n    host: {host.address}\n    ssh_port: {host.port}\n"
                 f"    ssh_key: {host.key_path}\n" + (extra or {}).get(name, ""))
    return write_plan(tmp_path / "plan", text, scripts)


@pytest.fixture
def two_hosts(tmp_path, cli: Cli, sshd_hosts):
    """Run `duo`: db (exports token) and web after db."""
    hosts = sshd_hosts(2)
    plan = _plan(tmp_path, hosts, ["web", "db"],
                 {"db": "    boot: db.sh.j2\n    exports: [token]\n",
                  "web": "    after: [db]\n"},
                 {"db.sh.j2": """
                      echo '{"token": "tok-42"}' > "$CLOUDINITD_EXPORT"
                      """})
    cli("boot", plan, "--name", "duo", "-q")
    return {"web": hosts[0], "db": hosts[1]}


def test_ssh_runs_a_command_with_the_runs_key_and_pinned_host_key(cli: Cli, two_hosts):
    web = two_hosts["web"]
    assert cli("ssh", "duo", "web", "--", "hostname").out.strip() == socket.gethostname()
    # The instance asked for, not another: the server side of the connection is web's.
    where = cli("ssh", "duo", "web/0", "--", "echo $SSH_CONNECTION").out.split()
    assert where[2:] == [web.address, str(web.port)]
    # The remote command's exit status is ssh's.
    assert cli("ssh", "duo", "db", "--", "exit 7", expect=7).code == 7

    printed = cli("ssh", "duo", "web", "--print").out
    assert "StrictHostKeyChecking=yes" in printed and "IdentitiesOnly=yes" in printed
    assert f"UserKnownHostsFile={cli.home}/runs/duo/known_hosts" in printed

    # A machine swapped in under web's address shows another key: refused, not trusted.
    web.restart(new_host_key=True)
    refused = cli("ssh", "duo", "web", "--", "hostname", expect=255)
    assert "host key" in refused.err.lower() and refused.out == ""


def test_ssh_choices_and_unknown_names_exit_2_with_the_list(cli: Cli, two_hosts):
    several = cli("ssh", "duo", "--", "hostname", expect=2)  # stdin is not a terminal: no prompt
    assert "db/0" in several.err and "web/0" in several.err
    wrong = cli("ssh", "duo", "wbe", expect=2)
    assert "no service 'wbe'" in wrong.err and "db, web" in wrong.err
    no_run = cli("ssh", "nope", "web", expect=2)
    assert "no run named 'nope'" in no_run.err and "duo" in no_run.err
    assert "duo" in cli("output", "nope", expect=2).err
    assert "Traceback" not in several.err + wrong.err + no_run.err


def test_exec_over_five_instances_one_failing_exits_1_naming_it(tmp_path, cli: Cli,
                                                               sshd_hosts):
    hosts = sshd_hosts(5)
    names = [f"s{i}" for i in range(5)]
    cli("boot", _plan(tmp_path, hosts, names), "--name", "five", "-q")
    bad = hosts[3]
    command = (f'case "$SSH_CONNECTION" in *" {bad.address} {bad.port}") echo broken >&2;'
               " exit 3;; esac; echo hi; printf '\\033]0;owned\\007clean\\n'")
    result = cli("exec", "five", "--", command, expect=1)
    lines = result.out.splitlines()
    assert sorted(line for line in lines if line.endswith(": hi")) == \
        [f"s{i}/0: hi" for i in (0, 1, 2, 4)]
    assert "\x1b" not in result.out and "\x07" not in result.out  # guest escapes removed
    assert "s0/0: clean" in lines
    assert "s3/0: broken" in result.err
    assert "1 of 5 instance(s) failed: s3/0" in result.err

    data = cli("exec", "five", "--json", "--", command, expect=1).json()
    assert data["ok"] is False
    exits = {(i["service"], i["index"]): i["exit"] for i in data["instances"]}
    assert exits == {("s0", 0): 0, ("s1", 0): 0, ("s2", 0): 0, ("s3", 0): 3, ("s4", 0): 0}
    s3 = next(i for i in data["instances"] if i["service"] == "s3")
    assert s3["address"] == bad.address and s3["stderr"] == "broken\n"

    only = cli("exec", "five", "--service", "s1", "--service", "s2", "--sudo", "--", "id -u")
    assert sorted(only.out.splitlines()) == ["s1/0: 0", "s2/0: 0"]
    assert "s9" in cli("exec", "five", "-s", "s9", "--", "true", expect=2).err
    assert "needs a command" in cli("exec", "five", expect=2).err


def test_output_raw_feeds_a_shell_loop(cli: Cli, two_hosts):
    env = {**cli.env, "PATH": f"{BIN}:{os.environ['PATH']}"}
    loop = subprocess.run(
        ["bash", "-c", "set -e; for a in $(cloudinitd output duo --raw); do echo got $a; done"],
        capture_output=True, text=True, env=env, check=True)
    # Dependency order: db (level 0) before web.
    assert loop.stdout.splitlines() == [f"got {two_hosts['db'].address}",
                                        f"got {two_hosts['web'].address}"]
    assert cli("output", "duo", "db.token", "--raw").out == "tok-42\n"
    assert cli("output", "duo", "web.address").out == f"{two_hosts['web'].address}\n"
    whole = cli("output", "duo", "--json").json()
    assert list(whole["services"]) == ["db", "web"]
    assert whole["services"]["db"][0]["token"] == "tok-42" and whole["outputs"] == {}
    text = cli("output", "duo").out
    assert "token=tok-42" in text and text.startswith("db/0")
    assert "attributes" in cli("output", "duo", "db.nope", expect=2).err
    assert "db, web" in cli("output", "duo", "wbe", expect=2).err


def test_status_is_in_dependency_order_with_exports_and_addresses(tmp_path, cli: Cli,
                                                                   sshd_hosts):
    hosts = sshd_hosts(3)
    # Alphabetical order would be app, mid, zeta; the graph says zeta, mid, app.
    plan = _plan(tmp_path, hosts, ["app", "mid", "zeta"],
                 {"zeta": "    boot: zeta.sh.j2\n    exports: [token]\n",
                  "mid": "    after: [zeta]\n", "app": "    after: [mid]\n"},
                 {"zeta.sh.j2": """
                      echo '{"token": "tok-7"}' > "$CLOUDINITD_EXPORT"
                      """})
    cli("boot", plan, "--name", "order", "-q")
    out = cli("status", "order").out
    assert out.index("  zeta:") < out.index("  mid:") < out.index("  app:")
    assert "token=tok-7" in out
    tail = out.split("addresses:\n")[1].splitlines()
    assert [line.split() for line in tail] == [["zeta/0", hosts[2].address],
                                               ["mid/0", hosts[1].address],
                                               ["app/0", hosts[0].address]]
    assert list(cli("status", "order", "--json").json()["services"]) == ["zeta", "mid", "app"]


def test_boot_reports_addresses(tmp_path, cli: Cli, sshd_hosts):
    hosts = sshd_hosts(1)
    booted = cli("boot", _plan(tmp_path, hosts, ["one"]), "--name", "solo", "--json").json()
    assert booted["addresses"] == {"one": [hosts[0].address]}
    cli("terminate", "solo", "-q")
    text = cli("boot", tmp_path / "plan" / "plan.yml", "--name", "solo2", "-q")
    assert f"one/0 {hosts[0].address}" in " ".join(text.err.split())


def test_list_and_history_have_headers_and_events(cli: Cli, two_hosts):
    listed = cli("list").out.splitlines()
    assert listed[0].split()[:3] == ["RUN", "STATUS", "LIVE"]
    assert listed[1].split()[0] == "duo"
    cli("repair", "duo", "-q")
    history = cli("history", "duo").out.splitlines()
    header = next(line for line in history if line.startswith("TIME"))
    assert header.split() == ["TIME", "EVENT", "SERVICE", "MESSAGE"]
    assert any(line.split()[:2] == ["SERVICE", "CLOUD"] for line in history)
    # Columns line up: every event's kind starts where the EVENT header does.
    at = header.index("EVENT")
    rows = history[history.index(header) + 1:]
    assert rows and all(row[at - 2:at] == "  " and row[at] != " " for row in rows)
    events = [e["kind"] for e in cli("history", "duo", "--json").json()["events"]]
    assert "repair" in events
    cli("terminate", "duo", "-q")
    events = [e["kind"] for e in cli("history", "duo", "--json").json()["events"]]
    assert "terminate" in events


def test_logs_of_an_unknown_service_exit_2_with_the_list(cli: Cli, two_hosts):
    err = cli("logs", "duo", "wbe", expect=2).err
    assert "wbe" in err and "db, web" in err


def test_completion_offers_run_and_service_names(cli: Cli, two_hosts, monkeypatch):
    import click

    from cloudinitd.cli.common import RUN, complete_instance, complete_service
    from cloudinitd.cli.main import cli as group

    monkeypatch.setenv("CLOUDINITD_HOME", str(cli.home))
    ctx = click.Context(group)
    assert [c.value for c in RUN.shell_complete(ctx, None, "d")] == ["duo"]
    assert RUN.shell_complete(ctx, None, "x") == []
    ctx.params["run"] = "duo"
    assert [c.value for c in complete_service(ctx, None, "w")] == ["web"]
    assert [c.value for c in complete_instance(ctx, None, "")] == ["db", "db/0", "web", "web/0"]
    # Through click's own completion protocol, as bash calls it.
    env = {**cli.env, "_CLOUDINITD_COMPLETE": "bash_complete", "COMP_WORDS": "cloudinitd ssh d",
           "COMP_CWORD": "2"}
    done = subprocess.run([str(BIN / "cloudinitd")], capture_output=True, text=True, env=env)
    assert "plain,duo" in done.stdout.splitlines()


def test_schema_is_the_plans_json_schema(cli: Cli):
    doc = json.loads(cli("schema").out)
    assert doc["$schema"].endswith("2020-12/schema")
    assert "services" in doc["properties"] and doc["required"] == ["services"]


def test_launch_vm_provider_qemu_boots_the_plan_on_the_qemu_cloud(cli: Cli):
    report = cli("--provider", "qemu", "--dry-run", "--json", program="launch-vm").json()
    wrapper = yaml.safe_load(Path(report["plan_path"]).read_text())
    assert wrapper["defaults"]["cloud"] == "qemu"
    # The default stays the shipped plan on LXC containers.
    plain = cli("--dry-run", "--json", program="launch-vm").json()
    assert yaml.safe_load(Path(plain["plan_path"]).read_text())["defaults"]["cloud"] == "local"
    both = cli("--provider", "qemu", program="launch-vm", expect=2,
               env={"CLOUDINITD_IAAS_URL": "http://127.0.0.1:9/"})
    assert "two clouds" in both.err


def test_ssh_asks_which_instance_on_a_terminal(cli: Cli, two_hosts):
    import pty

    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen([str(BIN / "cloudinitd"), "ssh", "duo", "--print"],
                                stdin=follower, stderr=follower, stdout=subprocess.PIPE,
                                env=cli.env, text=True)
        os.close(follower)
        follower = -1
        seen = b""
        while b"instance" not in seen:  # the question, after the numbered choices
            seen += os.read(leader, 1024)
        assert b"1) db/0" in seen and b"2) web/0" in seen
        os.write(leader, b"2\n")
        out, _ = proc.communicate(timeout=60)
    finally:
        os.close(leader)
        if follower != -1:
            os.close(follower)
    assert proc.returncode == 0
    assert out.split()[-1] == two_hosts["web"].address
