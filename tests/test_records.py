"""The store returns typed records (cloudinitd/records.py), not SQLite rows."""

from __future__ import annotations

import json

import pytest

from cloudinitd.providers.base import RUNNING, InstanceInfo
from cloudinitd.records import Event, Instance, Launch, Run, ServiceRecord
from cloudinitd.store import Store


def test_the_store_answers_with_records(tmp_path):
    store = Store(tmp_path)
    store.create_run("r", "p", tmp_path / "plan.yml", {"v": "1"}, {})
    store.set_service("r", "web", "ready")
    store.record_launch_intent("r", "web", "c", "tok", [0], {"run": "r"})
    store.record_instance("r", "web", 0, "c", "static", InstanceInfo("i-1", RUNNING, "10.0.0.1",
                                                                      extra={"accel": "kvm"}))
    store.event("r", "boot", "plan p", "web", 0)

    run = store.run("r")
    assert isinstance(run, Run) and run.vars == {"v": "1"} and run.status == "booting"
    assert isinstance(store.runs()[0], Run) and store.runs()[0].name == "r"
    assert isinstance(store.services("r")["web"], ServiceRecord)
    assert store.services("r")["web"].status == "ready"
    (launch,) = store.launches("r")
    assert isinstance(launch, Launch) and launch.indexes == [0] and launch.tags == {"run": "r"}
    (inst,) = store.instances("r")
    assert isinstance(inst, Instance)
    assert (inst.service, inst.idx, inst.address, inst.extra) == ("web", 0, "10.0.0.1",
                                                                  {"accel": "kvm"})
    (event,) = store.events("r")
    assert isinstance(event, Event) and (event.kind, event.idx) == ("boot", 0)
    # Plain data for --json.
    assert json.loads(json.dumps(inst.as_dict()))["instance_id"] == "i-1"
    store.close()


def test_a_column_a_newer_store_added_is_kept(tmp_path):
    store = Store(tmp_path)
    store.create_run("r", "p", tmp_path / "plan.yml", {}, {})
    store._exec("ALTER TABLE services ADD COLUMN note TEXT")
    store._exec("INSERT INTO services (run, name, status, updated, note) VALUES"
                " ('r', 'db', 'ready', 0, 'kept')")
    db = store.services("r")["db"]
    assert db.other == {"note": "kept"}
    assert db.as_dict()["note"] == "kept"
    store.close()


@pytest.mark.parametrize("make", [
    lambda: Run("r", "p", "/p.yml", "ready", 0.0, 0.0),
    lambda: ServiceRecord("r", "web", "ready"),
    lambda: Instance(1, "r", "web", 0, "c", "static", "i-1", None, RUNNING, "10.0.0.1", None,
                     None, None, 1, 0.0, None),
    lambda: Launch(1, "r", "web", "c", "tok", "requested", 0.0),
    lambda: Event(0.0, "boot", "plan p"),
], ids=["run", "service", "instance", "launch", "event"])
def test_a_record_is_not_a_mapping(make):
    """Rows indexed by column name were the domain model once; records are read by
    attribute only, so `record["status"]` cannot creep back in (it is a TypeError)."""
    record = make()
    with pytest.raises(TypeError):
        record["status"]  # noqa: B018
    for name in ("get", "keys", "__getitem__", "__contains__", "__iter__"):
        assert not hasattr(record, name), name
    with pytest.raises(TypeError):
        dict(record)
