"""cloudinitd.host.files: private files, atomically, with their mode from the first byte."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

from cloudinitd.host.files import create_private, write_private


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_written_0600_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        write_private(tmp_path / "secret", "key material\n")
        write_private(tmp_path / "public", b"pub\n", mode=0o644)
    finally:
        os.umask(old)
    assert mode(tmp_path / "secret") == 0o600
    assert (tmp_path / "secret").read_text() == "key material\n"
    assert mode(tmp_path / "public") == 0o644
    old = os.umask(0o077)
    try:
        write_private(tmp_path / "public2", b"pub\n", mode=0o644, sync=True)
    finally:
        os.umask(old)
    assert mode(tmp_path / "public2") == 0o644, "the asked mode, not the umask's"


def test_replaces_an_existing_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "users.json"
    target.write_text("old")
    target.chmod(0o644)
    write_private(target, "new")
    assert target.read_text() == "new" and mode(target) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["users.json"]


def test_a_symlink_in_its_place_is_replaced_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_text("keep me")
    link = tmp_path / "share.json"
    link.symlink_to(outside)
    write_private(link, "mine")
    assert outside.read_text() == "keep me"
    assert not link.is_symlink() and link.read_text() == "mine"


def test_a_crashed_writers_temporary_is_no_obstacle(tmp_path: Path) -> None:
    target = tmp_path / "meta.json"
    stale = tmp_path / f".meta.json.{os.getpid()}.{threading.get_ident()}.tmp"
    stale.write_text("half")
    write_private(target, "{}")
    assert target.read_text() == "{}" and not stale.exists()


def test_concurrent_writers_each_leave_a_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "plan.yml"
    texts = [f"writer {i}\n" * 2000 for i in range(8)]
    threads = [threading.Thread(target=write_private, args=(target, t)) for t in texts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert target.read_text() in texts
    assert [p.name for p in tmp_path.iterdir()] == ["plan.yml"]


def test_create_private_keeps_content_and_tightens_the_mode(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    old = os.umask(0)
    try:
        create_private(db)
    finally:
        os.umask(old)
    assert mode(db) == 0o600 and db.read_bytes() == b""
    db.write_bytes(b"SQLite format 3\0")
    db.chmod(0o644)
    create_private(db)
    assert mode(db) == 0o600 and db.read_bytes() == b"SQLite format 3\0"
