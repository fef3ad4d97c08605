"""The run store's on-disk layout: its SQL schema, the instance field groups, and
the in-place upgrade of stores written by older versions.

Split from store.py (issue 10: module size) so that the layout and its
migrations read as one piece, apart from the queries. Only store.py uses it.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from cloudinitd.host.files import create_private

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    name TEXT PRIMARY KEY,
    plan_name TEXT NOT NULL,
    plan_path TEXT NOT NULL,
    vars_json TEXT NOT NULL DEFAULT '{}',
    counts_json TEXT NOT NULL DEFAULT '{}',
    clouds_json TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    expires REAL
);
CREATE TABLE IF NOT EXISTS services (
    run TEXT NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    step TEXT,
    error TEXT,
    log_path TEXT,
    updated REAL NOT NULL,
    PRIMARY KEY (run, name)
);
CREATE TABLE IF NOT EXISTS launches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run TEXT NOT NULL,
    service TEXT NOT NULL,
    cloud TEXT NOT NULL,
    client_token TEXT NOT NULL UNIQUE,
    indexes_json TEXT NOT NULL,
    tags_json TEXT NOT NULL,
    status TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS instances (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run TEXT NOT NULL,
    service TEXT NOT NULL,
    idx INTEGER NOT NULL,
    cloud TEXT NOT NULL,
    provider TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    client_token TEXT,
    state TEXT NOT NULL,
    address TEXT,
    private_address TEXT,
    hostname TEXT,
    extra_json TEXT NOT NULL DEFAULT '{}',
    boot_hash TEXT,
    configured INTEGER NOT NULL DEFAULT 0,
    launched REAL NOT NULL,
    terminated REAL,
    UNIQUE (run, service, cloud, instance_id)
);
CREATE TABLE IF NOT EXISTS attributes (
    run TEXT NOT NULL,
    service TEXT NOT NULL,
    idx INTEGER NOT NULL,
    key TEXT NOT NULL,
    value_json TEXT NOT NULL,
    PRIMARY KEY (run, service, idx, key)
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run TEXT NOT NULL,
    ts REAL NOT NULL,
    service TEXT,
    idx INTEGER,
    kind TEXT NOT NULL,
    message TEXT NOT NULL
);
-- What each instance's last boot was made of, as keyed digests (engine/inputs.py):
-- `diff` names the input that changed. Its own table, so older stores gain it as is.
CREATE TABLE IF NOT EXISTS inputs (
    run TEXT NOT NULL,
    service TEXT NOT NULL,
    idx INTEGER NOT NULL,
    parts_json TEXT NOT NULL,
    PRIMARY KEY (run, service, idx)
);
CREATE TABLE IF NOT EXISTS watch_state (
    run TEXT NOT NULL,
    key TEXT NOT NULL,
    value_json TEXT NOT NULL,
    PRIMARY KEY (run, key)
);
CREATE INDEX IF NOT EXISTS instances_run ON instances (run, service, state);
CREATE INDEX IF NOT EXISTS events_run ON events (run, id);
"""

# An instance record is one service's use of one machine: several services may
# share a machine (two services on one static address, `host: OTHER`), so the
# record's identity is (run, service, cloud, instance_id). Facts about the
# machine (its state, addresses) hold for every record of it; what a service
# did on it (configured, the inputs it booted with) is that service's own.
MACHINE_FIELDS = ("state", "address", "private_address", "hostname", "extra_json",
                  "terminated")
SERVICE_FIELDS = ("boot_hash", "configured")
INSTANCE_FIELDS = MACHINE_FIELDS + SERVICE_FIELDS
# Stores made before services could share a machine keyed records without the service.
_OLD_INSTANCE_KEY = "UNIQUE (run, cloud, instance_id)"


def _create_private(path: Path) -> None:
    """Create the database file 0600 before SQLite opens it (SQLite follows the umask)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    create_private(path)


def upgrade_instance_key(db: sqlite3.Connection) -> None:
    """Rebuild an older `instances` table keyed without the service (same columns).

    The caller holds the store's lock; the rebuild is one IMMEDIATE transaction,
    so two processes opening one old store upgrade it once.
    """
    def table_sql() -> str:
        return db.execute("SELECT sql FROM sqlite_master WHERE type = 'table'"
                          " AND name = 'instances'").fetchone()[0]

    if _OLD_INSTANCE_KEY not in table_sql():
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        old_sql = table_sql()  # another process may have upgraded it meanwhile
        if _OLD_INSTANCE_KEY not in old_sql:
            db.execute("COMMIT")
            return
        new_sql = old_sql.replace(_OLD_INSTANCE_KEY,
                                  "UNIQUE (run, service, cloud, instance_id)")
        new_sql = new_sql.replace("CREATE TABLE instances", "CREATE TABLE instances_new", 1)
        db.execute(new_sql)
        db.execute("INSERT INTO instances_new SELECT * FROM instances")
        db.execute("DROP TABLE instances")
        db.execute("ALTER TABLE instances_new RENAME TO instances")
        db.execute("CREATE INDEX IF NOT EXISTS instances_run"
                   " ON instances (run, service, state)")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
