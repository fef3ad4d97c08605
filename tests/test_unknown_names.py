"""Every command that takes a RUN or a SERVICE: an unknown one is one line, exit 2,
naming what there is (a real run on OpenSSH servers)."""

from __future__ import annotations

import pytest

from tests.support.cli import Cli, write_plan


@pytest.fixture(scope="module")
def duo(tmp_path_factory, ssh_client_key):
    from tests.support import sshd

    tmp = tmp_path_factory.mktemp("unknown")
    key, pub = ssh_client_key
    hosts = [sshd._make_host(tmp, pub, key) for _ in range(2)]
    for h in hosts:
        h.start()
    text = "name: duo\nservices:\n"
    for name, h in zip(["db", "web"], hosts, strict=True):
        text += (f"  {name}:\n    host: {h.address}\n    ssh_port: {h.port}\n"
                 f"    ssh_key: {h.key_path}\n")
    plan = write_plan(tmp / "plan", text)
    cli = Cli(tmp / "home")
    cli("boot", plan, "--name", "duo", "-q")
    try:
        yield cli, plan
    finally:
        sshd._close_clients()
        for h in hosts:
            h.close()


RUN_COMMANDS = [
    ["status", "nope"], ["status", "nope", "--check"], ["repair", "nope"],
    ["scale", "nope", "web", "2"], ["terminate", "nope"], ["history", "nope"],
    ["logs", "nope"], ["clean", "nope"], ["ssh", "nope"], ["exec", "nope", "--", "true"],
    ["output", "nope"], ["graph", "nope"], ["image", "save", "nope", "web/0", "img"],
    ["reload", "PLAN", "--name", "nope"], ["diff", "PLAN", "--name", "nope"],
    ["reload", "PLAN", "--name", "nope", "--dry-run"],
]
SERVICE_COMMANDS = [
    ["scale", "duo", "wbe", "2"], ["logs", "duo", "wbe"], ["ssh", "duo", "wbe"],
    ["exec", "duo", "--service", "wbe", "--", "true"], ["output", "duo", "wbe"],
    ["output", "duo", "wbe.address"], ["image", "save", "duo", "wbe/0", "img"],
]


@pytest.mark.parametrize("args", RUN_COMMANDS, ids=lambda a: " ".join(a))
def test_an_unknown_run_is_exit_2_in_one_line(duo, args):
    cli, plan = duo
    res = cli(*[str(plan) if a == "PLAN" else a for a in args], expect=2)
    assert ("no run named 'nope'" in res.err or "no plan 'nope'" in res.err), res.err
    assert "Traceback" not in res.err
    assert res.err.count("\n") == 1, res.err


@pytest.mark.parametrize("args", SERVICE_COMMANDS, ids=lambda a: " ".join(a))
def test_an_unknown_service_is_exit_2_naming_the_services(duo, args):
    cli, _ = duo
    res = cli(*args, expect=2)
    assert "wbe" in res.err and "db" in res.err and "web" in res.err, res.err
    assert "Traceback" not in res.err and res.err.count("\n") == 1, res.err


def test_run_changing_commands_leave_events_in_history(duo):
    cli, plan = duo
    cli("exec", "duo", "--", "echo secret-word-42")
    cli("reload", plan, "--name", "duo", "-q")
    cli("repair", "duo", "-q")
    events = cli("history", "duo", "--json").json()["events"]
    kinds = [e["kind"] for e in events]
    assert {"boot", "exec", "reload", "repair"} <= set(kinds)
    exec_event = next(e for e in events if e["kind"] == "exec")
    assert exec_event["message"] == "a command on 2 instance(s): all succeeded"
    # What ran is not kept: a command line may carry a password.
    assert "secret-word-42" not in cli("history", "duo").out
    # A diff and a dry-run reload change nothing, so they leave no event.
    before = len(events)
    cli("diff", plan, "--name", "duo")
    cli("reload", plan, "--name", "duo", "--dry-run")
    assert len(cli("history", "duo", "--json").json()["events"]) == before
