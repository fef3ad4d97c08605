"""The engine's one partial-failure shape (engine/outcome.py), per instance and per service.

In-process, on the shipped doubles (a `memory` cloud and FakeRemote): boot,
check, scale and terminate all answer with RunOutcome, each instance with its
own `ok` and, when not ok, the step that failed and its log tail (exec, on real
SSH servers: tests/test_api.py).
"""

from __future__ import annotations

from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest

from cloudinitd import api
from cloudinitd.engine.boot import boot, start_run
from cloudinitd.engine.context import RunContext, open_run
from cloudinitd.engine.maintain import check, scale
from cloudinitd.engine.outcome import InstanceOutcome, Interrupted, RunOutcome, ServiceOutcome
from cloudinitd.engine.terminate import terminate_run
from cloudinitd.plan.loader import load_plan
from cloudinitd.store import Store
from cloudinitd.testing import FakeRemote, forget_clouds, memory_cloud

PLAN = """\
name: shape
clouds: {mem: {provider: memory}}
defaults: {cloud: mem, image: img, size: small, ssh_user: root, timeout: 30}
services:
  db: {boot: ok.sh, count: 3, ready: ok.sh}
  web: {boot: ok.sh, after: [db]}
"""


@pytest.fixture
def home(tmp_path: Path):
    (tmp_path / "plan").mkdir()
    (tmp_path / "plan" / "plan.yml").write_text(PLAN)
    (tmp_path / "plan" / "ok.sh").write_text("true\n")
    yield tmp_path / "home"
    forget_clouds(tmp_path / "home")


def _boot(home: Path, remote: dict) -> tuple[RunContext, RunOutcome]:
    store = Store(home)
    plan = load_plan(home.parent / "plan" / "plan.yml", catalog={})
    ctx = start_run(home, store, plan, {}, "r")
    ctx.remote = FakeRemote(remote)
    return ctx, boot(ctx)


def _again(home: Path, remote: dict | None = None) -> RunContext:
    ctx = open_run(home, Store(home), "r")
    ctx.remote = FakeRemote(remote)
    return ctx


def test_the_instance_that_failed_carries_its_step_and_log_tail(home):
    ctx, outcome = _boot(home, {"db-1": {"boot": {"fail": "disk full on db-1"}}})

    assert not outcome.ok
    db = outcome.services["db"]
    assert (db.state, db.ok, db.step) == ("failed", False, "boot")
    by_label = {i.label: i for i in outcome.instances}
    failed = by_label["db/1"]
    assert (failed.ok, failed.step) == (False, "boot")
    assert "disk full on db-1" in failed.log_tail and failed.detail == db.error
    # Its siblings did what they were asked (Fabric's GroupResult: per host).
    assert by_label["db/0"].ok and by_label["db/2"].ok
    assert by_label["db/0"].step is None and by_label["db/0"].detail == ""
    assert [i.label for i in outcome.failed_instances] == ["db/1", "web/0"]
    # The service lists its own instances, in index order, each the same object.
    assert [i.label for i in db.instances] == ["db/0", "db/1", "db/2"]
    assert db.instances[1] is failed
    # web never ran: skipped, and not ok (it launched, but nothing was configured).
    web = outcome.services["web"]
    assert (web.state, web.ok) == ("skipped", False)
    assert [s.name for s in outcome.skipped] == ["web"]
    assert all(not i.ok and "not run: db failed" in i.detail for i in web.instances)
    # Frozen: a caller cannot edit what the run reported.
    with pytest.raises(FrozenInstanceError):
        failed.ok = True  # type: ignore[misc]


def test_a_launch_failure_fails_every_instance_of_the_service(home):
    store = Store(home)
    plan = load_plan(home.parent / "plan" / "plan.yml", catalog={})
    ctx = start_run(home, store, plan, {}, "r")
    ctx.remote = FakeRemote()
    memory_cloud(home, "mem").faults["capacity"] = 2  # db wants 3: room for two
    outcome = boot(ctx)

    db = outcome.services["db"]
    assert (db.state, db.step) == ("failed", "launch")
    assert "capacity" in db.error
    # Those that did launch were never configured: not ok, with the service's error.
    assert db.instances and all(not i.ok and i.detail == db.error for i in db.instances)


def test_check_answers_per_instance_with_the_ready_log(home):
    _boot(home, {})
    memory_cloud(home, "mem").lose("db", 2)
    health = check(_again(home, {"db-0": {"ready": {"fail": "port 5432 closed"}}}))

    assert isinstance(health, RunOutcome) and not health.ok
    by_label = {i.label: i for i in health.instances}
    assert (by_label["db/0"].ok, by_label["db/0"].step) == (False, "ready")
    assert "port 5432 closed" in by_label["db/0"].log_tail
    assert by_label["db/0"].detail.startswith("ready script failed")
    assert by_label["db/1"].ok and by_label["web/0"].ok
    missing = by_label["db/2"]
    assert (missing.ok, missing.state, missing.detail) == (False, "missing", "no live instance")
    assert (health.services["db"].state, health.services["web"].state) == ("unhealthy", "ready")
    db, web = health.services["db"], health.services["web"]
    assert (health.run, db.name, db.ok, web.name, web.ok) == ("r", "db", False, "web", True)
    assert [i.label for i in db.instances] == ["db/0", "db/1", "db/2"]
    # each instance as recorded: its state, cloud, id and address
    one = by_label["db/1"]
    assert (one.state, one.cloud) == ("running", "mem")
    assert one.instance_id.startswith("mem-") and one.address.startswith("192.0.2.")
    assert [i.label for i in health.instances] == ["db/0", "db/1", "db/2", "web/0"]


def test_scale_and_terminate_name_what_they_removed(home):
    _boot(home, {})
    removed, converged = scale(_again(home), "db", 1)
    assert [(i.label, i.state, i.ok) for i in removed.removed] == [
        ("db/2", "terminated", True), ("db/1", "terminated", True)]
    assert converged.ok and [i.label for i in converged.instances] == ["db/0", "web/0"]
    live = {i.instance_id for i in converged.instances}

    where = {i.instance_id: (i.cloud, i.address) for i in converged.instances}
    done = terminate_run(_again(home))
    assert done.ok and done.errors == () and done.services == {}
    assert {i.instance_id for i in done.removed} == live
    assert all(i.state == "terminated" for i in done.removed)
    # each removed instance says where it was (its cloud, its address)
    assert {i.instance_id: (i.cloud, i.address) for i in done.removed} == where
    assert all(cloud == "mem" and address for cloud, address in where.values())


def test_a_cloud_that_refuses_a_terminate_is_an_error_of_the_outcome(home):
    _boot(home, {})
    memory_cloud(home, "mem").faults["fail_terminate"] = "the cloud said no"
    done = terminate_run(_again(home))
    assert not done.ok and done.removed == ()
    assert len(done.errors) == 1 and "the cloud said no" in done.errors[0]


def test_the_api_hands_on_the_engines_classes():
    # One shape, not a copy of it: nothing converts between engine and API.
    assert api.RunOutcome is RunOutcome and api.ServiceOutcome is ServiceOutcome
    assert api.InstanceOutcome is InstanceOutcome
    assert not (Path(api.__file__).parent / "convert.py").exists()


def test_a_service_entry_of_json_output_keeps_its_keys():
    inst = InstanceOutcome("db", 0, True, "running")
    svc = ServiceOutcome("db", "failed", False, "boot", "db: boot failed", "tail", "/l.log",
                         1.5, (inst,))
    assert svc.as_dict() == {"name": "db", "state": "failed", "step": "boot",
                             "error": "db: boot failed", "log_tail": "tail",
                             "log_path": "/l.log", "seconds": 1.5}


def test_addresses_group_live_instances_by_service_in_order():
    a0, b0, a1 = (InstanceOutcome("a", 0, True, "running", address="10.0.0.1"),
                  InstanceOutcome("b", 0, True, "running", address="10.0.0.2"),
                  InstanceOutcome("a", 1, True, "running", address="10.0.0.3"))
    assert RunOutcome("r", instances=(a0, b0, a1)).addresses() == {"a": [a0, a1], "b": [b0]}
    assert RunOutcome("r").addresses() == {}


def test_an_interrupt_names_its_run_and_by_default_nothing_unsettled():
    err = Interrupted("web-1")
    assert str(err) == "run web-1: interrupted"
    assert (err.run, err.live, err.unsettled) == ("web-1", (), 0)


def test_by_service_passes_extra_fields_on():
    from cloudinitd.engine.outcome import by_service

    inst = InstanceOutcome("db", 0, False, "running", detail="exit 1")
    out = by_service("r", (inst,), bad="failed", seconds=2.5)
    assert out.seconds == 2.5 and out.services["db"].state == "failed"


def test_instances_of_a_service_the_plan_lost_come_last(home):
    from cloudinitd.engine.outcome import in_order

    ctx, _ = _boot(home, {})
    items = [InstanceOutcome("gone", 0, True, "running"), InstanceOutcome("web", 0, True, "x"),
             InstanceOutcome("db", 1, True, "x"), InstanceOutcome("db", 0, True, "x")]
    assert [i.label for i in in_order(ctx, items)] == ["db/0", "db/1", "web/0", "gone/0"]
