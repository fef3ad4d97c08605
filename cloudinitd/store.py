"""The run store: one SQLite file under $CLOUDINITD_HOME, mode 0600, WAL.

Rows are written *before* the thing they describe happens where that
matters: a launch intent (client token, tags) before the cloud call, each
instance id as soon as the provider reports it. Nothing secret is stored:
cloud entries hold references (profile names, env var names), never keys.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from cloudinitd.errors import RunNotFound, UsageError
from cloudinitd.providers.base import LIVE_STATES, InstanceInfo
from cloudinitd.records import Event, Instance, Launch, Run, ServiceRecord

# The schema, the instance field groups and the upgrade of older stores live in
# storeschema.py (issue 10: module size); re-exported here (`X as X`) because
# callers and tests read them as cloudinitd.store.SCHEMA and so on.
from cloudinitd.storeschema import INSTANCE_FIELDS as INSTANCE_FIELDS
from cloudinitd.storeschema import MACHINE_FIELDS as MACHINE_FIELDS
from cloudinitd.storeschema import SCHEMA as SCHEMA
from cloudinitd.storeschema import SERVICE_FIELDS as SERVICE_FIELDS
from cloudinitd.storeschema import _create_private, upgrade_instance_key

_log = logging.getLogger("cloudinitd.events")  # shown by `cloudinitd -v`


class Store:
    """Thread-safe access to the run store (one connection guarded by a lock)."""

    def __init__(self, home: Path):
        self.home = Path(home)
        self.path = self.home / "state.db"
        _create_private(self.path)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None,
                                   timeout=30)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        # In WAL mode NORMAL syncs at checkpoints, not at every commit: a crash of
        # this process loses nothing; a power cut may lose the last commits but never
        # corrupts the file. A per-commit fdatasync cost ~2 ms x 10 per host.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=30000")
        self._db.executescript(SCHEMA)
        self._upgrade_instance_key()

    def _upgrade_instance_key(self) -> None:
        """Rebuild an older `instances` table keyed without the service (same columns)."""
        with self._lock:
            upgrade_instance_key(self._db)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Group the writes of one state change into one commit (all or nothing).

        Re-entrant: inside another transaction it joins it. Other threads'
        statements wait for the lock meanwhile, so keep the block to store calls.
        """
        with self._lock:
            if self._db.in_transaction:
                yield
                return
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _exec(self, sql: str, args: Iterable[Any] = ()) -> sqlite3.Cursor:
        with self._lock:
            return self._db.execute(sql, tuple(args))

    def _rows(self, sql: str, args: Iterable[Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self._db.execute(sql, tuple(args)).fetchall()]

    # runs --------------------------------------------------------------
    def run_dir(self, run: str) -> Path:
        return self.home / "runs" / run

    def create_run(self, name: str, plan_name: str, plan_path: Path, vars: dict[str, Any],
                   clouds: dict[str, dict[str, Any]], expires: float | None = None) -> None:
        """`vars` are the --var overrides as given; `clouds` the cloud entries the run may
        use (provider + options, which hold references only), so that `terminate` works
        even when the plan file is gone. The entries are re-checked against the cloud
        schema first: nothing unvalidated (no secret) is recorded."""
        from cloudinitd.cloudspec import recordable  # the cloud schema: only when writing

        now = time.time()
        try:
            self._exec(
                "INSERT INTO runs (name, plan_name, plan_path, vars_json, clouds_json, status,"
                " created, updated, expires) VALUES (?, ?, ?, ?, ?, 'booting', ?, ?, ?)",
                (name, plan_name, str(plan_path), json.dumps(vars, default=str),
                 json.dumps(recordable(clouds)), now, now, expires),
            )
        except sqlite3.IntegrityError:
            raise UsageError(f"a run named {name!r} already exists (pick another --name)") from None
        run_dir = self.run_dir(name)
        (run_dir / "logs").mkdir(parents=True, exist_ok=True)
        os.chmod(run_dir, 0o700)

    def unique_run_name(self, base: str) -> str:
        taken = {r["name"] for r in self._rows("SELECT name FROM runs WHERE name LIKE ?",
                                               (f"{base}%",))}
        for n in range(1, 100000):
            candidate = f"{base}-{n}"
            if candidate not in taken:
                return candidate
        raise UsageError("could not find a free run name")

    def run(self, name: str) -> Run:
        rows = self._rows("SELECT * FROM runs WHERE name = ?", (name,))
        if not rows:
            raise RunNotFound(name)
        row = rows[0]
        row["vars"] = json.loads(row.pop("vars_json"))
        row["counts"] = json.loads(row.pop("counts_json"))
        row["clouds"] = json.loads(row.pop("clouds_json"))
        return Run.from_row(row)

    def runs(self) -> list[Run]:
        """Every run, oldest first (without vars, counts and clouds: `run(name)` has them)."""
        return [Run.from_row(r) for r in self._rows(
            "SELECT name, plan_name, plan_path, status, created, updated, expires"
            " FROM runs ORDER BY created")]

    def update_run(self, name: str, **fields: Any) -> None:
        if "vars" in fields:
            fields["vars_json"] = json.dumps(fields.pop("vars"), default=str)
        if "clouds" in fields:
            from cloudinitd.cloudspec import recordable

            fields["clouds_json"] = json.dumps(recordable(fields.pop("clouds")))
        if "counts" in fields:
            fields["counts_json"] = json.dumps(fields.pop("counts"), default=str)
        fields["updated"] = time.time()
        cols = ", ".join(f"{k} = ?" for k in fields)
        self._exec(f"UPDATE runs SET {cols} WHERE name = ?", (*fields.values(), name))

    def delete_run(self, name: str) -> None:
        """Forget a run entirely (`clean` after everything is terminated).

        Every table with a `run` column is cleared, found in the schema itself
        so that a table added later is cleared too; all or nothing.
        """
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for table in self._run_tables():
                    self._db.execute(f'DELETE FROM "{table}" WHERE run = ?', (name,))
                self._db.execute("DELETE FROM runs WHERE name = ?", (name,))
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _run_tables(self) -> list[str]:
        tables = [r[0] for r in self._db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        return [t for t in tables
                if any(col[1] == "run" for col in self._db.execute(f'PRAGMA table_info("{t}")'))]

    # services ----------------------------------------------------------
    def set_service(self, run: str, name: str, status: str, step: str | None = None,
                    error: str | None = None, log_path: str | None = None) -> None:
        self._exec(
            "INSERT INTO services (run, name, status, step, error, log_path, updated)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run, name) DO UPDATE SET"
            " status = excluded.status, step = excluded.step, error = excluded.error,"
            " log_path = COALESCE(excluded.log_path, services.log_path),"
            " updated = excluded.updated",
            (run, name, status, step, error, log_path, time.time()),
        )

    def services(self, run: str) -> dict[str, ServiceRecord]:
        return {r["name"]: ServiceRecord.from_row(r)
                for r in self._rows("SELECT * FROM services WHERE run = ?", (run,))}

    # launches and instances --------------------------------------------
    def record_launch_intent(self, run: str, service: str, cloud: str, client_token: str,
                             indexes: list[int], tags: dict[str, str]) -> None:
        self._exec(
            "INSERT OR IGNORE INTO launches (run, service, cloud, client_token, indexes_json,"
            " tags_json, status, created) VALUES (?, ?, ?, ?, ?, ?, 'requested', ?)",
            (run, service, cloud, client_token, json.dumps(indexes), json.dumps(tags),
             time.time()),
        )

    def finish_launch(self, client_token: str, status: str) -> None:
        self._exec("UPDATE launches SET status = ? WHERE client_token = ?", (status, client_token))

    def launches(self, run: str) -> list[Launch]:
        rows = self._rows("SELECT * FROM launches WHERE run = ? ORDER BY id", (run,))
        for r in rows:
            r["indexes"] = json.loads(r.pop("indexes_json"))
            r["tags"] = json.loads(r.pop("tags_json"))
        return [Launch.from_row(r) for r in rows]

    def record_instance(self, run: str, service: str, index: int, cloud: str, provider: str,
                        info: InstanceInfo, client_token: str | None = None) -> None:
        self._exec(
            "INSERT INTO instances (run, service, idx, cloud, provider, instance_id,"
            " client_token, state, address, private_address, hostname, extra_json, launched)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (run, service, cloud, instance_id) DO UPDATE SET"
            " state = excluded.state",
            (run, service, index, cloud, provider, info.instance_id, client_token, info.state,
             info.address, info.private_address, info.hostname,
             json.dumps(info.extra, default=str), time.time()),
        )

    def update_instance(self, run: str, cloud: str, instance_id: str,
                        service: str | None = None, **fields: Any) -> None:
        """Update the records of one machine: every service's on it, or only `service`'s.

        What a service did there (`configured`, `boot_hash`) needs `service`:
        on a shared machine it must not mark its neighbours done.
        """
        if "extra" in fields:
            fields["extra_json"] = json.dumps(fields.pop("extra"), default=str)
        unknown = set(fields) - set(INSTANCE_FIELDS)
        if unknown:
            raise ValueError(f"unknown instance fields {unknown}")
        if service is None and set(fields) & set(SERVICE_FIELDS):
            raise ValueError(f"{sorted(set(fields) & set(SERVICE_FIELDS))} belong to one"
                             " service's record: pass service=")
        if fields.get("state") == "terminated" and "terminated" not in fields:
            fields["terminated"] = time.time()
        cols = ", ".join(f"{k} = ?" for k in fields)
        where = "run = ? AND cloud = ? AND instance_id = ?"
        args: list[Any] = [*fields.values(), run, cloud, instance_id]
        if service is not None:
            where += " AND service = ?"
            args.append(service)
        self._exec(f"UPDATE instances SET {cols} WHERE {where}", args)

    def update_from_info(self, run: str, cloud: str, info: InstanceInfo) -> None:
        fields: dict[str, Any] = {"state": info.state}
        for key in ("address", "private_address", "hostname"):
            if getattr(info, key):
                fields[key] = getattr(info, key)
        if info.extra:
            fields["extra"] = info.extra
        self.update_instance(run, cloud, info.instance_id, **fields)

    def instances(self, run: str, service: str | None = None,
                  live_only: bool = True) -> list[Instance]:
        sql = "SELECT * FROM instances WHERE run = ?"
        args: list[Any] = [run]
        if service is not None:
            sql += " AND service = ?"
            args.append(service)
        if live_only:
            sql += f" AND state IN ({', '.join('?' * len(LIVE_STATES))})"
            args.extend(sorted(LIVE_STATES))
        rows = self._rows(sql + " ORDER BY service, idx, id", args)
        for r in rows:
            r["extra"] = json.loads(r.pop("extra_json"))
        return [Instance.from_row(r) for r in rows]

    # attributes ----------------------------------------------------------
    def set_attributes(self, run: str, service: str, index: int, attrs: dict[str, Any]) -> None:
        with self.transaction():
            for key, value in attrs.items():
                self._db.execute(
                    "INSERT INTO attributes (run, service, idx, key, value_json) VALUES"
                    " (?, ?, ?, ?, ?) ON CONFLICT (run, service, idx, key) DO UPDATE SET"
                    " value_json = excluded.value_json",
                    (run, service, index, key, json.dumps(value)),
                )

    def clear_attributes(self, run: str, service: str, index: int) -> None:
        self._exec("DELETE FROM attributes WHERE run = ? AND service = ? AND idx = ?",
                   (run, service, index))

    def attributes(self, run: str) -> dict[tuple[str, int], dict[str, Any]]:
        out: dict[tuple[str, int], dict[str, Any]] = {}
        for r in self._rows("SELECT * FROM attributes WHERE run = ?", (run,)):
            out.setdefault((r["service"], r["idx"]), {})[r["key"]] = json.loads(r["value_json"])
        return out

    # inputs (engine/inputs.py) -------------------------------------------------
    def set_inputs(self, run: str, service: str, index: int, parts: dict[str, str]) -> None:
        self._exec("INSERT INTO inputs (run, service, idx, parts_json) VALUES (?, ?, ?, ?)"
                   " ON CONFLICT (run, service, idx) DO UPDATE SET"
                   " parts_json = excluded.parts_json",
                   (run, service, index, json.dumps(parts, sort_keys=True)))

    def inputs(self, run: str) -> dict[tuple[str, int], dict[str, str]]:
        return {(r["service"], r["idx"]): json.loads(r["parts_json"])
                for r in self._rows("SELECT * FROM inputs WHERE run = ?", (run,))}

    # what `watch` remembers between ticks (cloud back-off, last scaling) ----
    def watch_state(self, run: str, key: str, default: Any = None) -> Any:
        rows = self._rows("SELECT value_json FROM watch_state WHERE run = ? AND key = ?",
                          (run, key))
        return json.loads(rows[0]["value_json"]) if rows else default

    def set_watch_state(self, run: str, key: str, value: Any) -> None:
        self._exec("INSERT INTO watch_state (run, key, value_json) VALUES (?, ?, ?)"
                   " ON CONFLICT (run, key) DO UPDATE SET value_json = excluded.value_json",
                   (run, key, json.dumps(value)))

    # events --------------------------------------------------------------
    def event(self, run: str, kind: str, message: str, service: str | None = None,
              index: int | None = None) -> None:
        who = service if index is None or service is None else f"{service}-{index}"
        _log.info("%s %s%s: %s", run, f"{who} " if who else "", kind, message)
        self._exec("INSERT INTO events (run, ts, service, idx, kind, message)"
                   " VALUES (?, ?, ?, ?, ?, ?)", (run, time.time(), service, index, kind, message))

    def events(self, run: str) -> list[Event]:
        return [Event.from_row(r) for r in self._rows(
            "SELECT ts, service, idx, kind, message FROM events WHERE run = ? ORDER BY id",
            (run,))]
