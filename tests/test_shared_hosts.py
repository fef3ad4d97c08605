"""Several services on one machine (the original cloudinit.d pattern) all run.

Real OpenSSH servers on 127.0.0.x stand for the machines; every script
leaves a marker file in a folder the test owns, so the test sees which
scripts really ran.
"""

from __future__ import annotations

from pathlib import Path

from cloudinitd.store import Store
from tests.support.cli import Cli, write_plan


def _on(host, extra: str = "") -> str:
    return (f"    host: {host.address}\n    ssh_port: {host.port}\n"
            f"    ssh_key: {host.key_path}\n{extra}")


MARK = "echo {{ self.name }} {{ self.address }} >> {{ vars.out }}/{{ self.name }}\n"


def test_two_services_on_one_static_address_both_run(tmp_path, cli: Cli, sshd_hosts):
    out = tmp_path / "out"
    out.mkdir()
    (host,) = sshd_hosts(1)
    text = (f"name: same\nvars:\n  out: {out}\nservices:\n"
            "  first:\n" + _on(host, "    boot: mark.sh.j2\n")
            + "  second:\n" + _on(host, "    boot: mark.sh.j2\n    ready: mark.sh.j2\n"
                                      "    terminate: mark.sh.j2\n"))
    plan = write_plan(tmp_path / "same", text, {"mark.sh.j2": MARK})

    booted = cli("boot", plan, "--name", "same-1", "--json").json()
    assert booted["ok"] is True
    assert (out / "first").read_text() == f"first {host.address}\n"
    # boot and ready of the second service both ran on the same machine.
    assert (out / "second").read_text() == f"second {host.address}\n" * 2

    status = cli("status", "same-1", "--json").json()
    for name in ("first", "second"):
        (inst,) = status["services"][name]["instances"]
        assert inst["address"] == host.address
    cli("terminate", "same-1")
    assert (out / "second").read_text() == f"second {host.address}\n" * 3  # its terminate ran


def test_many_services_on_one_vm_through_host_chains(tmp_path, cli: Cli, sshd_hosts):
    """`host: OTHER` chains: a base machine, then services stacked on it in order."""
    out = tmp_path / "out"
    out.mkdir()
    (host,) = sshd_hosts(1)
    text = (f"name: stack\nvars:\n  out: {out}\nservices:\n"
            "  vm:\n" + _on(host, "    boot: mark.sh.j2\n")
            + "  db:\n    host: vm\n    boot: mark.sh.j2\n    exports: [port]\n"
            "  app:\n    host: vm\n    boot: app.sh.j2\n"
            "  web:\n    host: app\n    after: [app]\n    boot: mark.sh.j2\n"
            "  cron:\n    host: vm\n    after: [web]\n    boot: mark.sh.j2\n")
    plan = write_plan(tmp_path / "stack", text, {
        "mark.sh.j2": MARK + "echo port=5432 > \"$CLOUDINITD_EXPORT\"\n",
        "app.sh.j2": "echo app {{ db.port }} >> {{ vars.out }}/app\n",
    })

    assert cli("boot", plan, "--name", "stack-1", "--json").json()["ok"] is True
    for name in ("vm", "db", "web", "cron"):
        assert (out / name).read_text() == f"{name} {host.address}\n", name
    assert (out / "app").read_text() == "app 5432\n"  # db's export reached its neighbour

    rows = Store(cli.home).instances("stack-1")
    assert sorted(r.service for r in rows) == ["app", "cron", "db", "vm", "web"]
    cli("terminate", "stack-1")


def test_a_failing_service_on_a_shared_host_fails_the_boot(tmp_path, cli: Cli, sshd_hosts):
    out = tmp_path / "out"
    out.mkdir()
    (host,) = sshd_hosts(1)
    text = (f"name: shfail\nvars:\n  out: {out}\nservices:\n"
            "  base:\n" + _on(host, "    boot: mark.sh.j2\n")
            + "  good:\n    host: base\n    boot: mark.sh.j2\n"
            "  bad:\n    host: base\n    boot: bad.sh.j2\n"
            "  twin:\n" + _on(host, "    boot: bad.sh.j2\n"))
    plan = write_plan(tmp_path / "shfail", text, {
        "mark.sh.j2": MARK,
        "bad.sh.j2": MARK + "echo 'the {{ self.name }} widget broke' >&2\nexit 4\n",
    })

    failed = cli("boot", plan, "--name", "shfail-1", expect=1)
    assert "bad failed at step boot" in failed.err
    assert "twin failed at step boot" in failed.err
    assert "the bad widget broke" in failed.err
    for name in ("base", "good", "bad", "twin"):
        assert (out / name).read_text() == f"{name} {host.address}\n", name
    status = cli("status", "shfail-1", "--json", expect=1).json()
    assert status["services"]["bad"]["status"] == "failed"
    assert status["services"]["good"]["status"] == "ready"
    cli("terminate", "shfail-1")


def test_store_keeps_one_record_per_service_on_a_shared_machine(tmp_path):
    from cloudinitd.providers.base import InstanceInfo

    store = Store(tmp_path / "home")
    store.create_run("r", "p", Path("p.yml"), {}, {})
    info = InstanceInfo(instance_id="static:10.0.0.5#0", state="running", address="10.0.0.5")
    store.record_instance("r", "a", 0, "static", "static", info)
    store.record_instance("r", "b", 0, "static", "static", info)
    assert [r.service for r in store.instances("r")] == ["a", "b"]
    store.update_instance("r", "static", info.instance_id, service="b", configured=1)
    configured = {r.service: r.configured for r in store.instances("r")}
    assert configured == {"a": 0, "b": 1}
    # A machine-wide fact (it is gone) reaches every service's record on it.
    store.update_instance("r", "static", info.instance_id, state="terminated")
    assert store.instances("r") == []


def test_same_run_name_from_two_homes_keeps_two_remote_folders(tmp_path, sshd_hosts):
    """Run names are unique per $CLOUDINITD_HOME only: on a shared host each run keeps its
    own private folder, and terminating one leaves the other's alone."""
    out = tmp_path / "out"
    out.mkdir()
    (host,) = sshd_hosts(1)
    text = (f"name: twin\nvars:\n  out: {out}\nservices:\n"
            "  web:\n" + _on(host, "    boot: where.sh.j2\n"))
    where = 'pwd > {{ vars.out }}/"$(basename "$CLOUDINITD_EXPORT" .x)-$$"\n'
    plan = write_plan(tmp_path / "twin", text, {"where.sh.j2": where})
    homes = [Cli(tmp_path / "h1"), Cli(tmp_path / "h2")]
    dirs = []
    for cli in homes:
        before = set(out.iterdir())
        assert cli("boot", plan, "--name", "same", "--json").json()["ok"] is True
        (new,) = set(out.iterdir()) - before
        dirs.append(Path(new.read_text().strip()))
    assert dirs[0] != dirs[1] and all(d.is_dir() for d in dirs)
    homes[0]("terminate", "same")
    assert not dirs[0].exists() and dirs[1].is_dir()
    homes[1]("terminate", "same")
    assert not dirs[1].exists()
