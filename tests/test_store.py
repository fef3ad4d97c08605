"""The run store on real SQLite files."""

from __future__ import annotations

import datetime
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
    assert store.run("r1").vars == {"n": "2"}
    assert store.run("r1").status == "booting"


def test_intent_is_recorded_before_instances_and_history_is_kept(store, tmp_path):
    store.create_run("r", "p", tmp_path / "plan.yml", {}, {"c": {"provider": "ec2"}})
    store.record_launch_intent("r", "web", "c", "tok-1", [0, 1], {"cloudinitd:run": "r"})
    assert store.launches("r")[0].status == "requested"
    store.record_instance("r", "web", 0, "c", "ec2", InstanceInfo("i-1"), "tok-1")
    store.record_instance("r", "web", 1, "c", "ec2", InstanceInfo("i-2"), "tok-1")
    store.update_from_info("r", "c", InstanceInfo("i-1", state="running", address="10.0.0.5"))
    store.update_instance("r", "c", "i-2", state="terminated")
    live = store.instances("r")
    assert [(r.instance_id, r.state, r.address) for r in live] == [
        ("i-1", "running", "10.0.0.5")]
    every = store.instances("r", live_only=False)
    assert {r.instance_id for r in every} == {"i-1", "i-2"}
    assert next(r for r in every if r.instance_id == "i-2").terminated is not None
    assert store.run("r").clouds == {"c": {"provider": "ec2", "options": {}}}


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
    assert [r.name for r in store.runs()] == ["kept-run"]


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
    assert store.run("r").clouds == {}
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
    assert [r.service for r in s.instances("r")] == ["a", "b"]
    s.close()
    Store(home).close()  # opening again is a no-op


def test_launches_keep_indexes_tags_and_status(store, tmp_path):
    store.create_run("r", "p", tmp_path / "plan.yml", {}, {})
    store.record_launch_intent("r", "web", "c", "tok-1", [0, 1], {"cloudinitd:run": "r"})
    store.record_launch_intent("r", "web", "c", "tok-1", [5], {})  # a retry: ignored
    store.record_launch_intent("r", "db", "c", "tok-2", [3], {"k": "v"})
    store.finish_launch("tok-1", "done")
    rows = store.launches("r")
    assert [(r.service, r.client_token, r.indexes, r.tags, r.status)
            for r in rows] == [("web", "tok-1", [0, 1], {"cloudinitd:run": "r"}, "done"),
                               ("db", "tok-2", [3], {"k": "v"}, "requested")]
    assert "indexes_json" not in rows[0].other and "tags_json" not in rows[0].other


def test_update_instance_extra_and_field_checks(store, tmp_path):
    store.create_run("r", "p", tmp_path / "plan.yml", {}, {})
    for service in ("a", "b"):  # two services on one machine
        store.record_instance("r", service, 0, "c", "static", InstanceInfo("h#0", "running"))
    store.update_instance("r", "c", "h#0", extra={"zone": "z1", "when": 1.5})
    assert [r.extra for r in store.instances("r")] == [{"zone": "z1", "when": 1.5}] * 2
    assert "extra_json" not in store.instances("r")[0].other
    with pytest.raises(ValueError, match=r"^unknown instance fields \{'colour'\}$"):
        store.update_instance("r", "c", "h#0", colour="red")
    with pytest.raises(ValueError, match=r"^\['configured'\] belong to one service's record"
                                         r": pass service=$"):
        store.update_instance("r", "c", "h#0", configured=1, state="running")
    store.update_instance("r", "c", "h#0", service="a", configured=1)
    assert {r.service: r.configured for r in store.instances("r")} == {"a": 1, "b": 0}


def test_unique_run_name_gives_up_after_99999(store):
    with store.transaction():
        store._db.executemany(
            "INSERT INTO runs (name, plan_name, plan_path, status, created, updated)"
            " VALUES (?, 'p', 'p', 'done', 0, 0)", ((f"big-{n}",) for n in range(1, 100000)))
    with pytest.raises(UsageError, match="^could not find a free run name$"):
        store.unique_run_name("big")
    assert store.unique_run_name("bi") == "bi-1"  # `big-N` names share the prefix only


def test_delete_run_is_all_or_nothing(store, tmp_path):
    """A failure part-way through `clean` leaves the run whole and the store usable."""
    _fill_run(store, "held-run", tmp_path)
    before = _rows_mentioning(store.path, "held-run")
    store._db.executescript("""
        CREATE TABLE later (run TEXT NOT NULL);
        INSERT INTO later VALUES ('held-run');
        CREATE TRIGGER later_guard BEFORE DELETE ON later BEGIN SELECT RAISE(ABORT, 'held'); END;
    """)
    with pytest.raises(sqlite3.IntegrityError, match="held"):
        store.delete_run("held-run")
    assert not store._db.in_transaction
    after = _rows_mentioning(store.path, "held-run")
    assert after == {**before, "later": 1}
    store._db.execute("DROP TRIGGER later_guard")
    store.delete_run("held-run")
    assert set(_rows_mentioning(store.path, "held-run").values()) == {0}


def test_terminated_time_is_set_once_and_only_for_termination(store, tmp_path):
    store.create_run("r", "p", tmp_path / "plan.yml", {}, {})
    for iid in ("i-1", "i-2", "i-3"):
        store.record_instance("r", "web", 0, "c", "ec2", InstanceInfo(iid))
    store.update_from_info("r", "c", InstanceInfo("i-1", state="running",
                                                  extra={"zone": "z1"}))
    store.update_instance("r", "c", "i-2", state="terminated", terminated=123.0)
    store.update_instance("r", "c", "i-3", state="terminated")
    rows = {r.instance_id: r for r in store.instances("r", live_only=False)}
    assert rows["i-1"].terminated is None and rows["i-1"].extra == {"zone": "z1"}
    assert rows["i-2"].terminated == 123.0
    assert rows["i-3"].terminated > 123.0


@pytest.mark.parametrize(("service", "index", "line"), [
    ("web", 2, "r web-2 boot: started"),
    ("web", None, "r web boot: started"),
    (None, None, "r boot: started"),
    (None, 3, "r boot: started"),
])
def test_events_are_logged_with_who_they_concern(store, tmp_path, caplog, service, index,
                                                 line):
    store.create_run("r", "p", tmp_path / "plan.yml", {}, {})
    with caplog.at_level("INFO", logger="cloudinitd.events"):
        store.event("r", "boot", "started", service=service, index=index)
    assert [rec.getMessage() for rec in caplog.records if rec.name == "cloudinitd.events"] == [
        line]
    assert [(e.service, e.idx, e.kind, e.message) for e in store.events("r")] == [
        (service, index, "boot", "started")]


def test_a_new_home_is_made_private_at_any_depth(tmp_path):
    s = Store(tmp_path / "a" / "b" / "home")
    try:
        assert s.path == tmp_path / "a" / "b" / "home" / "state.db"
        assert s.path.stat().st_mode & 0o777 == 0o600
        assert s.path.parent.stat().st_mode & 0o777 == 0o700
        assert s.run_dir("r") == tmp_path / "a" / "b" / "home" / "runs" / "r"
    finally:
        s.close()


def test_run_folder_is_private_and_may_already_exist(store, tmp_path):
    """A run folder left by an earlier process (same name, store row gone) is reused."""
    (store.home / "runs" / "again" / "logs").mkdir(parents=True)
    store.create_run("again", "p", tmp_path / "plan.yml", {}, {})
    store.create_run("fresh", "p", tmp_path / "plan.yml", {}, {})
    for name in ("again", "fresh"):
        assert (store.home / "runs" / name / "logs").is_dir()
        assert (store.home / "runs" / name).stat().st_mode & 0o777 == 0o700
    with pytest.raises(RunNotFound, match="no run named 'gone'"):
        store.run("gone")


def test_values_json_cannot_hold_are_stored_as_text(store, tmp_path):
    when = datetime.date(2026, 11, 26)
    store.create_run("r", "p", tmp_path / "plan.yml", {"when": when}, {})
    assert store.run("r").vars == {"when": "2026-11-26"}
    store.update_run("r", vars={"n": 3, "at": when}, counts={"web": when},
                     clouds={"c": {"provider": "ec2", "options": {"region": "r1"}}},
                     status="ready")
    run = store.run("r")
    assert (run.vars, run.counts, run.status) == (
        {"n": 3, "at": "2026-11-26"}, {"web": "2026-11-26"}, "ready")
    assert run.clouds == {"c": {"provider": "ec2", "options": {"region": "r1"}}}
    assert not any(k in run.other for k in ("vars_json", "counts_json", "clouds_json"))
    store.record_instance("r", "web", 0, "c", "ec2",
                          InstanceInfo("i-1", extra={"launched": when, "n": 1}))
    assert store.instances("r", live_only=False)[0].extra == {"launched": "2026-11-26",
                                                                  "n": 1}
    store.update_instance("r", "c", "i-1", extra={"seen": when})
    assert store.instances("r", live_only=False)[0].extra == {"seen": "2026-11-26"}


def _old_store(home) -> None:
    """A state.db as stores before shared machines made it: instances keyed without service."""
    import cloudinitd.store as store_module

    home.mkdir(parents=True)
    db = sqlite3.connect(home / "state.db")
    db.executescript(store_module.SCHEMA.replace("UNIQUE (run, service, cloud, instance_id)",
                                                 "UNIQUE (run, cloud, instance_id)"))
    db.execute("INSERT INTO instances (run, service, idx, cloud, provider, instance_id, state,"
               " launched) VALUES ('r', 'a', 0, 'static', 'static', 'static:h#0', 'running', 1)")
    db.commit()
    db.close()


def _instances_sql(home) -> str:
    db = sqlite3.connect(home / "state.db")
    try:
        return db.execute("SELECT sql FROM sqlite_master WHERE name = 'instances'").fetchone()[0]
    finally:
        db.close()


def test_upgrade_done_by_another_process_meanwhile_is_left_alone(tmp_path):
    """Two processes open an old store at once: the one that loses the race commits nothing."""
    home = tmp_path / "home"
    _old_store(home)
    s = Store.__new__(Store)  # the loser, stopped just before it takes the write lock
    s._lock = threading.RLock()
    s._db = sqlite3.connect(home / "state.db", isolation_level=None)
    winner = []

    def other_process_first(statement: str) -> None:
        if statement == "BEGIN IMMEDIATE" and not winner:
            winner.append(Store(home))  # upgrades and commits
            winner[0].close()

    s._db.set_trace_callback(other_process_first)
    s._upgrade_instance_key()
    assert winner and not s._db.in_transaction
    s._db.close()
    assert "UNIQUE (run, service, cloud, instance_id)" in _instances_sql(home)
    s = Store(home)
    assert [r.instance_id for r in s.instances("r")] == ["static:h#0"]
    s.close()


def test_a_failed_upgrade_changes_nothing(tmp_path):
    home = tmp_path / "home"
    _old_store(home)
    db = sqlite3.connect(home / "state.db")
    db.execute("CREATE TABLE instances_new (x)")  # in the way of the rebuilt table
    db.commit()
    db.close()
    with pytest.raises(sqlite3.OperationalError, match="instances_new already exists"):
        Store(home)
    assert "UNIQUE (run, cloud, instance_id)" in _instances_sql(home)
    db = sqlite3.connect(home / "state.db")
    assert db.execute("SELECT instance_id FROM instances").fetchall() == [("static:h#0",)]
    db.close()


def test_watch_state_is_kept_per_run_and_key(tmp_path):
    store = Store(tmp_path)
    assert store.watch_state("r", "k") is None and store.watch_state("r", "k", {}) == {}
    store.set_watch_state("r", "k", {"a": 1})
    store.set_watch_state("r", "k", {"a": 2})
    store.set_watch_state("other", "k", 5)
    assert store.watch_state("r", "k") == {"a": 2} and store.watch_state("other", "k") == 5


def test_boot_inputs_are_kept_per_instance_with_sorted_parts(store, tmp_path):
    store.create_run("r", "p", tmp_path / "plan.yml", {}, {})
    store.set_inputs("r", "web", 0, {"vars": "d1", "script:boot": "d0"})
    store.set_inputs("r", "web", 0, {"vars": "d2", "script:boot": "d0"})  # the last boot wins
    store.set_inputs("r", "web", 1, {"vars": "d3"})
    store.set_inputs("other", "web", 0, {"vars": "x"})
    got = store.inputs("r")
    assert got == {("web", 0): {"script:boot": "d0", "vars": "d2"}, ("web", 1): {"vars": "d3"}}
    assert list(got[("web", 0)]) == ["script:boot", "vars"]
