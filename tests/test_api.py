"""The public Python API (cloudinitd.api) on real OpenSSH servers (static hosts on 127.0.0.x).

The README's example is run as it is written there; the other tests drive the
same calls the command line makes and check the one partial-failure shape.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloudinitd import api
from cloudinitd.errors import PlanError, RunNotFound, UsageError
from tests.support.cli import write_plan

ROOT = Path(__file__).resolve().parents[1]


def readme_example() -> dict:
    """The python block after the `api-example` marker in README.md, executed."""
    text = (ROOT / "README.md").read_text()
    found = re.search(r"<!-- api-example:[^>]*-->\n```python\n(.*?)```", text, re.S)
    assert found, "README.md lost its api-example block"
    namespace: dict = {"__name__": "readme_example"}
    exec(compile(found.group(1), "README.md:api-example", "exec"), namespace)  # noqa: S102
    return namespace


@pytest.fixture(autouse=True)
def _close_sessions() -> Iterator[None]:
    yield
    from cloudinitd.remote import close_all

    close_all()  # the command line does this at exit; in-process, each test does


def _host(name: str, host, extra: str) -> str:
    return (f"  {name}:\n    host: {host.address}\n    ssh_port: {host.port}\n"
            f"    ssh_key: {host.key_path}\n{extra}")


def chain(tmp_path: Path, hosts, out: Path, db_boot: str = "echo token=t-1 > $CLOUDINITD_EXPORT\n"
          ) -> Path:
    db, web = hosts
    text = (f"name: chain\nvars:\n  out: {out}\nservices:\n"
            + _host("db", db, "    boot: db.sh.j2\n    exports: [token]\n"
                    "    terminate: term.sh.j2\n")
            + _host("web", web, "    boot: web.sh.j2\n    ready: ready.sh.j2\n"
                    "    terminate: term.sh.j2\n"))
    return write_plan(tmp_path / "chain", text, {
        "db.sh.j2": db_boot,
        "web.sh.j2": "echo {{ db.token }} > {{ vars.out }}/web-token\n",
        "ready.sh.j2": "test -e {{ vars.out }}/web-token\n",
        "term.sh.j2": "echo {{ self.name }} >> {{ vars.out }}/terminated\n",
    })


def test_the_readme_example_boots_a_plan_from_python(tmp_path, sshd_hosts, capsys):
    out = tmp_path / "out"
    out.mkdir()
    home = tmp_path / "home"
    example = readme_example()
    plan = chain(tmp_path, sshd_hosts(2), out)

    outcome = example["boot_and_report"](plan, home)

    printed = capsys.readouterr().out
    assert outcome.ok and not outcome.failed
    assert (out / "web-token").read_text() == "t-1\n"  # db's export reached web's script
    assert [i.label for i in outcome.instances] == ["db/0", "web/0"]  # dependency order
    for inst in outcome.instances:
        assert f"{inst.label} running {inst.address}" in printed
    assert "db: ready" in printed and "web: configuring" in printed  # the progress callback
    assert f"run {outcome.run}: healthy" in printed
    assert api.status(outcome.run, home=home).status == "ready"
    assert [r.name for r in api.runs(home=home)] == [outcome.run]

    assert example["tear_down"](outcome.run, home) is True
    assert "terminated 2 instance(s)" in capsys.readouterr().out
    assert (out / "terminated").read_text().split() == ["web", "db"]  # dependents first
    assert api.status(outcome.run, home=home).status == "terminated"


def test_a_failure_is_one_shape_for_services_and_instances(tmp_path, sshd_hosts):
    out = tmp_path / "out"
    out.mkdir()
    home = tmp_path / "home"
    plan = chain(tmp_path, sshd_hosts(2), out,
                 db_boot="echo 'frobnicator exploded' >&2\nexit 3\n")

    outcome = api.boot(plan, home=home, name="fails-1")

    assert not outcome.ok
    assert [s.name for s in outcome.failed] == ["db"]
    db = outcome.services["db"]
    assert (db.state, db.step, db.ok) == ("failed", "boot", False)
    assert "frobnicator exploded" in db.log_tail
    assert [s.name for s in outcome.skipped] == ["web"]
    # Each instance carries its service's failure: a caller can walk instances alone.
    failed = {i.label: i for i in outcome.failed_instances}
    assert "db/0" in failed and failed["db/0"].detail == db.error
    assert db.instances == (failed["db/0"],)
    assert not (out / "web-token").exists()

    status = api.status("fails-1", home=home)
    assert not status.ok
    assert status.services["db"].status == "failed"
    assert status.services["web"].status == "skipped"
    assert [f.path.rsplit("/", 1)[1] for f in api.logs("fails-1", "db", home=home)] \
        == ["db-0.boot.log"]
    assert "frobnicator exploded" in api.logs("fails-1", "db", home=home)[0].text

    # Fix the plan, reload it: the same RunOutcome, now ok.
    (plan.parent / "db.sh.j2").write_text("echo token=t-2 > $CLOUDINITD_EXPORT\n")
    fixed = api.reload(plan, "fails-1", home=home)
    assert fixed.ok and fixed.services["web"].state == "ready"
    assert (out / "web-token").read_text() == "t-2\n"
    history = api.history("fails-1", home=home)
    assert {e.kind for e in history.events} >= {"boot", "failed", "reload", "ready"}
    assert sorted(i.service for i in history.instances) == ["db", "web"]

    done = api.clean("fails-1", home=home)
    assert done.ok and done.forgotten
    assert sorted(i.label for i in done.removed) == ["db/0", "web/0"]
    assert api.runs(home=home) == ()


def test_check_and_status_merge_health_per_instance(tmp_path, sshd_hosts):
    out = tmp_path / "out"
    out.mkdir()
    home = tmp_path / "home"
    plan = chain(tmp_path, sshd_hosts(2), out)
    run = api.boot(plan, home=home).run

    (out / "web-token").unlink()  # web's ready script fails from now on
    health = api.check(run, home=home)
    assert not health.ok
    assert [i.label for i in health.failed_instances] == ["web/0"]
    assert "ready script failed" in health.failed_instances[0].detail
    assert health.services["db"].ok and not health.services["web"].ok

    status = api.status(run, home=home, check=True)
    assert status.healthy is False and status.status == "unhealthy" and not status.ok
    web = status.services["web"]
    assert web.status == "unhealthy" and web.instances[0].healthy is False
    assert status.as_dict()["services"]["db"]["instances"][0]["healthy"] is True

    repaired = api.repair(run, home=home)
    assert repaired.ok and (out / "web-token").exists()
    assert api.status(run, home=home, check=True).healthy is True
    assert api.terminate(run, home=home).ok


def test_errors_are_the_cloudinitd_error_classes(tmp_path):
    home = tmp_path / "home"
    with pytest.raises(RunNotFound):
        api.status("no-such-run", home=home)
    with pytest.raises(UsageError, match="no plan"):
        api.load(tmp_path / "missing.yml", home=home)
    bad = write_plan(tmp_path / "bad", "name: bad\nservices:\n  a:\n    after: [b]\n")
    with pytest.raises((PlanError, UsageError)):
        api.load(bad, home=home)


def test_every_public_name_is_there() -> None:
    missing = [name for name in api.__all__ if not hasattr(api, name)]
    assert missing == []
    for name in ("boot", "status", "check", "repair", "scale", "reload", "terminate", "runs",
                 "history", "logs", "clean", "exec", "load", "run_plan", "plan_outputs"):
        assert callable(getattr(api, name)) and name in api.__all__, name


def test_exec_answers_in_the_same_shape_per_instance(tmp_path, sshd_hosts):
    """Per instance: the exit status and output, or (`exit` None) why it never ran."""
    out = tmp_path / "out"
    out.mkdir()
    home = tmp_path / "home"
    db_host, web_host = sshd_hosts(2)
    run = api.boot(chain(tmp_path, (db_host, web_host), out), home=home).run
    lines: list[tuple[str, str, str]] = []
    command = (f'case "$SSH_CONNECTION" in *" {db_host.address} {db_host.port}")'
               " echo broken >&2; exit 3;; esac; echo hi")

    result = api.exec(run, command, home=home, on_line=lambda *line: lines.append(line))

    assert isinstance(result, api.RunOutcome) and result.run == run and not result.ok
    db, web = result.instances  # dependency order
    assert (db.label, db.ok, db.exit, db.step, db.detail) == ("db/0", False, 3, "exec",
                                                              "exit status 3")
    assert (db.stderr, db.address) == ("broken\n", db_host.address)
    assert (web.label, web.ok, web.exit, web.step, web.detail, web.stdout) == (
        "web/0", True, 0, None, "", "hi\n")
    assert [i.label for i in result.failed_instances] == ["db/0"]
    assert (result.services["db"].ok, result.services["web"].ok) == (False, True)
    assert ("web/0", "stdout", "hi") in lines and ("db/0", "stderr", "broken") in lines

    web_host.restart(new_host_key=True)  # a pinned key that changed: never runs there
    refused = api.exec(run, "echo hi", home=home, services=("web",))
    (web,) = refused.instances
    assert (web.ok, web.exit, web.step) == (False, None, "exec")
    assert "host key" in web.detail.lower() and web.stdout == ""
    assert not refused.ok and refused.failed_instances == (web,)


def test_image_save_flushes_the_guest_through_the_exec_outcome(tmp_path, sshd_hosts):
    """`image save` runs `sync` through the engine's exec (run_command) and reads its
    outcome: on a reachable host it says so; on a host whose key changed it says why."""
    from cloudinitd.images.save import flush_guest
    from cloudinitd.store import Store

    out = tmp_path / "out"
    out.mkdir()
    home = tmp_path / "home"
    db_host, web_host = sshd_hosts(2)
    run = api.boot(chain(tmp_path, (db_host, web_host), out), home=home).run
    store = Store(home)
    try:
        said: list[str] = []
        flush_guest(home, store, run, store.instances(run, "db")[0], said.append)
        assert said == ["flushed the guest's writes (db/0: sync)"]

        # `image save` is a new process: no connection of the boot's is left to reuse
        # (an established session outlives the listener's restart).
        from cloudinitd import remote

        remote.close_all()
        web_host.restart(new_host_key=True)
        said.clear()
        flush_guest(home, store, run, store.instances(run, "web")[0], said.append)
        assert len(said) == 1 and said[0].startswith("could not flush the guest's writes")
        assert "host key" in said[0].lower()
    finally:
        store.close()
