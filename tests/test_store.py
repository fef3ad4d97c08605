"""The run store on real SQLite files."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from cloudinitd.errors import RunNotFound, UsageError
from cloudinitd.providers.base import InstanceInfo
from cloudinitd.store import Store


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "home")
    yield s
    s.close()


def test_file_is_private_and_in_wal_mode(store):
    assert store.path.stat().st_mode & 0o777 == 0o600
    assert store.path.parent.stat().st_mode & 0o777 == 0o700
    mode = sqlite3.connect(store.path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_run_names_are_unique(store, tmp_path):
    store.create_run("r1", "p", tmp_path / "plan.yml", {"n": "2"}, {})
    with pytest.raises(UsageError, match="already exists"):
        store.create_run("r1", "p", tmp_path / "plan.yml", {}, {})
    assert store.unique_run_name("r") == "r-1"
    store.create_run("r-1", "p", tmp_path / "plan.yml", {}, {})
    assert store.unique_run_name("r") == "r-2"
    with pytest.raises(RunNotFound):
        store.run("nope")
    assert store.run("r1")["vars"] == {"n": "2"}


def test_intent_is_recorded_before_instances_and_history_is_kept(store, tmp_path):
    store.create_run("r", "p", tmp_path / "plan.yml", {}, {"c": {"provider": "ec2"}})
    store.record_launch_intent("r", "web", "c", "tok-1", [0, 1], {"cloudinitd:run": "r"})
    assert store.launches("r")[0]["status"] == "requested"
    store.record_instance("r", "web", 0, "c", "ec2", InstanceInfo("i-1"), "tok-1")
    store.record_instance("r", "web", 1, "c", "ec2", InstanceInfo("i-2"), "tok-1")
    store.update_from_info("r", "c", InstanceInfo("i-1", state="running", address="10.0.0.5"))
    store.update_instance("r", "c", "i-2", state="terminated")
    live = store.instances("r")
    assert [(r["instance_id"], r["state"], r["address"]) for r in live] == [
        ("i-1", "running", "10.0.0.5")]
    every = store.instances("r", live_only=False)
    assert {r["instance_id"] for r in every} == {"i-1", "i-2"}
    assert next(r for r in every if r["instance_id"] == "i-2")["terminated"] is not None
    assert store.run("r")["clouds"] == {"c": {"provider": "ec2", "options": {}}}


def test_attributes_round_trip_json_values(store, tmp_path):
    store.create_run("r", "p", tmp_path / "plan.yml", {}, {})
    store.set_attributes("r", "db", 0, {"port": 5432, "evil": "'; rm -rf /; '"})
    store.set_attributes("r", "db", 0, {"port": 5433})
    assert store.attributes("r") == {("db", 0): {"port": 5433, "evil": "'; rm -rf /; '"}}
    store.clear_attributes("r", "db", 0)
    assert store.attributes("r") == {}


def test_concurrent_writers_from_threads(store, tmp_path):
    store.create_run("r", "p", tmp_path / "plan.yml", {}, {})

    def write(n):
        for i in range(50):
            store.record_instance("r", f"s{n}", i, "c", "local", InstanceInfo(f"i-{n}-{i}"))
            store.event("r", "launched", f"{n}-{i}", f"s{n}", i)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(store.instances("r")) == 400
    assert len(store.events("r")) == 400


def _fill_run(store: Store, run: str, folder) -> None:
    """One of everything the store can hold about a run, through its public methods."""
    store.create_run(run, "p", folder / "plan.yml", {"n": "2"},
                     {"c": {"provider": "ec2", "options": {"region": "r1"}}}, expires=9e9)
    store.update_run(run, counts={"web": 2})
    store.set_service(run, "web", "ready", step="boot", log_path=str(folder / run / "web.log"))
    store.record_launch_intent(run, "web", "c", f"tok-{run}", [0, 1], {"cloudinitd:run": run})
    store.finish_launch(f"tok-{run}", "done")
    store.record_instance(run, "web", 0, "c", "ec2", InstanceInfo(f"i-{run}", hostname=run),
                          f"tok-{run}")
    store.set_attributes(run, "web", 0, {"exported": f"value-of-{run}"})
    store.event(run, "boot", f"booting {run}", service="web", index=0)
    store.set_inputs(run, "web", 0, {"script:boot": f"digest-of-{run}"})
    store.set_watch_state(run, "cloud_backoff", {"c": {"failures": 1, "last_failure": 1.0}})


def _rows_mentioning(path, text: str) -> dict[str, int]:
    """Per table of the database's own schema: rows with `text` in any column."""
    db = sqlite3.connect(path)
    try:
        tables = [r[0] for r in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        out = {}
        for table in tables:
            rows = db.execute(f'SELECT * FROM "{table}"').fetchall()
            out[table] = sum(1 for row in rows if any(text in str(v) for v in row))
        return out
    finally:
        db.close()


def test_delete_run_leaves_nothing_of_the_run_in_any_table(store, tmp_path):
    """Every table the schema has (found in sqlite_master, so a new table is covered)."""
    _fill_run(store, "gone-run", tmp_path)
    _fill_run(store, "kept-run", tmp_path)
    before = _rows_mentioning(store.path, "gone-run")
    # A table this test does not fill would pass unexamined: it must be filled above.
    assert [t for t, n in before.items() if n == 0] == []
    kept_before = _rows_mentioning(store.path, "kept-run")
    store.delete_run("gone-run")
    assert _rows_mentioning(store.path, "gone-run") == dict.fromkeys(before, 0)
    assert _rows_mentioning(store.path, "kept-run") == kept_before  # the neighbour is intact
    assert [r["name"] for r in store.runs()] == ["kept-run"]


@pytest.mark.parametrize(
    "options",
    [
        {"endpoint": "http://AKIASTOREKEY00000001:st0re-Secret@127.0.0.1:9/"},
        {"credentials": {"secret_key": "st0re-Secret"}},
        {"key": "st0re-Secret"},
        {"region": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYst0reSecret"},
    ],
    ids=["userinfo", "secret-key", "unknown-key", "credential-value"],
)
def test_unvalidated_cloud_entries_are_never_recorded(store, tmp_path, options):
    with pytest.raises(UsageError) as info:
        store.create_run("r", "p", tmp_path / "plan.yml", {}, {"c": {"provider": "ec2",
                                                                     "options": options}})
    assert "st0re-Secret" not in str(info.value) and "cloud 'c'" in str(info.value)
    assert store.runs() == []
    store.create_run("r", "p", tmp_path / "plan.yml", {}, {})
    with pytest.raises(UsageError):
        store.update_run("r", clouds={"c": {"provider": "ec2", "options": options}})
    assert store.run("r")["clouds"] == {}
    store.close()
    for path in store.path.parent.iterdir():
        if path.is_file():
            assert b"st0re-Secret" not in path.read_bytes(), path


def test_a_store_keyed_without_the_service_is_upgraded_in_place(tmp_path):
    """state.db files from before shared machines keep their rows and gain the new key."""
    import cloudinitd.store as store_module

    home = tmp_path / "home"
    old_schema = store_module.SCHEMA.replace("UNIQUE (run, service, cloud, instance_id)",
                                             "UNIQUE (run, cloud, instance_id)")
    assert old_schema != store_module.SCHEMA
    home.mkdir()
    db = sqlite3.connect(home / "state.db")
    db.executescript(old_schema)
    db.execute("INSERT INTO instances (run, service, idx, cloud, provider, instance_id, state,"
               " launched) VALUES ('r', 'a', 0, 'static', 'static', 'static:h#0', 'running', 1)")
    db.commit()
    db.close()

    s = Store(home)
    s.record_instance("r", "b", 0, "static", "static", InstanceInfo("static:h#0", "running"))
    assert [r["service"] for r in s.instances("r")] == ["a", "b"]
    s.close()
    Store(home).close()  # opening again is a no-op


def test_watch_state_is_kept_per_run_and_key(tmp_path):
    store = Store(tmp_path)
    assert store.watch_state("r", "k") is None and store.watch_state("r", "k", {}) == {}
    store.set_watch_state("r", "k", {"a": 1})
    store.set_watch_state("r", "k", {"a": 2})
    store.set_watch_state("other", "k", 5)
    assert store.watch_state("r", "k") == {"a": 2} and store.watch_state("other", "k") == 5
