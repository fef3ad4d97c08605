"""The service's own records: launch configurations and groups, per user.

`$CLOUDINITD_HOME/service.db` (SQLite, 0600), apart from the run store:
a group points at its run by name; the run store keeps everything about
the instances. What a request changes is committed before it is answered,
so a killed `serve` finds every group, its desired capacity and any
deletion under way when it starts again.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloudinitd.host.files import create_private

STATE_FILE = "service.db"

SCHEMA = """
CREATE TABLE IF NOT EXISTS launch_configs (
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    cloud TEXT NOT NULL,
    image TEXT NOT NULL,
    size TEXT NOT NULL,
    key_name TEXT,
    user_data BLOB,
    created REAL NOT NULL,
    PRIMARY KEY (owner, name, cloud)
);
CREATE TABLE IF NOT EXISTS groups (
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    run TEXT NOT NULL UNIQUE,
    launch_config TEXT NOT NULL,
    placements_json TEXT NOT NULL,
    min_size INTEGER NOT NULL,
    max_size INTEGER NOT NULL,
    desired INTEGER NOT NULL,
    tags_json TEXT NOT NULL,
    phantom INTEGER NOT NULL,
    status TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (owner, name)
);
"""
ACTIVE, DELETING = "active", "deleting"


@dataclass(frozen=True)
class LaunchConfig:
    owner: str
    name: str
    cloud: str
    image: str
    size: str
    key_name: str | None
    user_data: bytes | None  # exactly as sent (any bytes: gzip, text)
    created: float

    @property
    def full_name(self) -> str:
        return f"{self.name}@{self.cloud}"


@dataclass(frozen=True)
class Group:
    owner: str
    name: str
    run: str
    launch_config: str
    placements: list[tuple[str, int]]  # (cloud, max) in overflow order; -1: no limit
    min_size: int
    max_size: int
    desired: int
    tags: dict[str, str]
    phantom: bool  # created with Phantom's tags: min = max = desired
    status: str
    created: float


def _launch_config(row: dict[str, Any]) -> LaunchConfig:
    data = row["user_data"]
    if isinstance(data, str):  # a row from before UserData was kept as bytes: UTF-8 text
        data = data.encode()
    return LaunchConfig(**{**row, "user_data": data})


def _group(row: dict[str, Any]) -> Group:
    return Group(owner=row["owner"], name=row["name"], run=row["run"],
                 launch_config=row["launch_config"],
                 placements=[(c, int(m)) for c, m in json.loads(row["placements_json"])],
                 min_size=row["min_size"], max_size=row["max_size"], desired=row["desired"],
                 tags=json.loads(row["tags_json"]), phantom=bool(row["phantom"]),
                 status=row["status"], created=row["created"])


class ServiceState:
    """Thread-safe (one connection, one lock), like the run store."""

    def __init__(self, home: Path):
        self.path = Path(home) / STATE_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        create_private(self.path)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None,
                                   timeout=30)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=30000")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self._db.execute(sql, args).fetchall()]

    def _exec(self, sql: str, args: tuple[Any, ...] = ()) -> int:
        with self._lock:
            return self._db.execute(sql, args).rowcount

    # launch configurations ------------------------------------------------
    def add_launch_config(self, lc: LaunchConfig) -> bool:
        """False when the owner already has one by that name on that cloud."""
        try:
            self._exec("INSERT INTO launch_configs VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (lc.owner, lc.name, lc.cloud, lc.image, lc.size, lc.key_name,
                        lc.user_data, lc.created))
        except sqlite3.IntegrityError:
            return False
        return True

    def launch_configs(self, owner: str, name: str | None = None) -> list[LaunchConfig]:
        sql, args = "SELECT * FROM launch_configs WHERE owner = ?", (owner,)
        if name is not None:
            sql, args = sql + " AND name = ?", (owner, name)
        return [_launch_config(r) for r in self._rows(sql + " ORDER BY name, cloud", args)]

    def count_launch_configs(self, owner: str) -> int:
        return self._rows("SELECT COUNT(*) AS n FROM launch_configs WHERE owner = ?",
                          (owner,))[0]["n"]

    def delete_launch_config(self, owner: str, name: str, cloud: str) -> bool:
        return self._exec("DELETE FROM launch_configs WHERE owner = ? AND name = ? AND cloud = ?",
                          (owner, name, cloud)) > 0

    # groups -------------------------------------------------------------
    def add_group(self, group: Group) -> bool:
        try:
            self._exec("INSERT INTO groups VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (group.owner, group.name, group.run, group.launch_config,
                        json.dumps(group.placements), group.min_size, group.max_size,
                        group.desired, json.dumps(group.tags), int(group.phantom),
                        group.status, group.created))
        except sqlite3.IntegrityError:
            return False
        return True

    def group(self, owner: str, name: str) -> Group | None:
        rows = self._rows("SELECT * FROM groups WHERE owner = ? AND name = ?", (owner, name))
        return _group(rows[0]) if rows else None

    def groups(self, owner: str | None = None) -> list[Group]:
        if owner is None:
            return [_group(r) for r in self._rows("SELECT * FROM groups ORDER BY created")]
        return [_group(r) for r in self._rows("SELECT * FROM groups WHERE owner = ?"
                                              " ORDER BY name", (owner,))]

    def count_groups(self, owner: str) -> int:
        return self._rows("SELECT COUNT(*) AS n FROM groups WHERE owner = ?", (owner,))[0]["n"]

    def set_capacity(self, owner: str, name: str, desired: int, min_size: int,
                     max_size: int) -> bool:
        return self._exec("UPDATE groups SET desired = ?, min_size = ?, max_size = ?"
                          " WHERE owner = ? AND name = ? AND status = ?",
                          (desired, min_size, max_size, owner, name, ACTIVE)) > 0

    def mark_deleting(self, owner: str, name: str) -> bool:
        return self._exec("UPDATE groups SET status = ? WHERE owner = ? AND name = ?",
                          (DELETING, owner, name)) > 0

    def remove_group(self, run: str) -> None:
        self._exec("DELETE FROM groups WHERE run = ?", (run,))

    def groups_using(self, owner: str, launch_config: str) -> list[str]:
        return [r["name"] for r in self._rows("SELECT name FROM groups WHERE owner = ? AND"
                                              " launch_config = ?", (owner, launch_config))]


def now() -> float:
    return time.time()
