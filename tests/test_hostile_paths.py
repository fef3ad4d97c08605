"""File names in a plan come from someone else: what the hostile-plan harness cannot run.

Every field that names a file, given each hostile kind of name, is a case of
tests/support/badplans.py (`hostile_file_names`), run by test_hostile_plans.py
in a forked child under a memory limit. Here: what loads fine on purpose (a
missing key, a missing level file), the key a connection reads (a real
sshd), the answers of plan/limits.py, and a name swapped for a FIFO or a
device between its check and its opening: every check by name is made to
pass, so only the check on the opened file stands between us and a hang.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cloudinitd.errors import PlanErrors, RemoteError, UsageError
from cloudinitd.importer import import_plan
from cloudinitd.plan.loader import load_plan
from tests.support.hostile import HOSTILE, ORIGINAL, hostile_folder, within


def new_plan(folder: Path, *rows: str) -> tuple[Path, int]:
    """A plan of one service `a` with `rows`; the last row's line."""
    lines = ["name: t", "services:", "  a:", *("    " + r for r in rows)]
    (folder / "plan.yml").write_text("\n".join(lines) + "\n")
    return folder / "plan.yml", len(lines)


def original_plan(folder: Path, conf: str = "level1.conf", key: str = "",
                  value: str = "") -> tuple[Path, int]:
    """badplans.ORIGINAL in `folder`, `key:` of `conf` set to `value` (added when absent)."""
    for name, text in ORIGINAL.items():
        (folder / name).write_text(text)
    if not key:
        return folder / "top.conf", 0
    rows = ORIGINAL[conf].splitlines()
    hits = [i for i, r in enumerate(rows) if r.startswith(f"{key}:")]
    at = hits[0] if hits else len(rows)
    rows[at:at + 1] = [f"{key}: {value}"]
    (folder / conf).write_text("\n".join(rows) + "\n")
    return folder / "top.conf", at + 1


def test_a_missing_ssh_key_is_accepted_at_load(tmp_path):
    """The key may live only where `boot` runs, or be gone by the time a run is
    terminated: the plan still loads (the connection says what is missing)."""
    hostile_folder(tmp_path)
    plan, _ = new_plan(tmp_path, "host: 127.0.0.1", "boot: b.sh", "ssh_key: nowhere/id_ed25519")
    loaded = load_plan(plan)
    assert loaded.services["a"].ssh_key == (tmp_path / "nowhere" / "id_ed25519").resolve()


def test_a_missing_level_file_is_still_an_empty_level(tmp_path):
    """As the original did; only a name that cannot be a file at all is refused."""
    top, _ = original_plan(tmp_path, "top.conf", "level3", "also-nowhere.conf")
    path, notes = import_plan(top, tmp_path / "out", {})
    assert any("is missing" in n.message for n in notes)
    assert path.exists()


# --- the key a connection reads -------------------------------------------------


@pytest.mark.parametrize("race", [False, True], ids=["named", "swapped"])
@pytest.mark.parametrize("kind", ["fifo", "devzero", "folder", "missing"])
def test_a_bad_ssh_key_fails_the_connection_at_once(sshd_hosts, tmp_path, monkeypatch,
                                                    kind, race):
    """The plan's key may change after it was loaded: the connection checks it again
    and fails with a clear error, without retrying until the SSH wait runs out.
    `swapped`: the check by name passes (as when the name changes right after it);
    the key is read from the opened file, paramiko never opens the name."""
    from cloudinitd.remote import SshTarget, close_all, wait_for_ssh

    (host,) = sshd_hosts(1)
    hostile_folder(tmp_path)
    key = {"missing": tmp_path / "gone"}.get(kind) or (tmp_path / HOSTILE[kind])
    if race:
        checks_by_name_pass(monkeypatch)
    target = SshTarget(host.address, host.port, host.user, key, tmp_path / "kh", "svc-0")
    try:
        with pytest.raises(RemoteError) as caught:
            within(20, wait_for_ssh, target, 600, "svc")
    finally:
        close_all()
    assert str(caught.value).startswith(f"svc: ssh failed: ssh key {key} ")
    assert "after" not in str(caught.value)  # not the "no SSH after N s" of a wait


def test_the_key_is_read_by_cloudinitd_and_logs_in(sshd_hosts, tmp_path):
    """The key reaches paramiko as a key object read from the checked file."""
    from cloudinitd.remote import SshTarget, close_all, session_for, wait_for_ssh

    (host,) = sshd_hosts(1)
    target = SshTarget(host.address, host.port, host.user, host.key_path, tmp_path / "kh",
                       "svc-0")
    try:
        within(60, wait_for_ssh, target, 30, "svc")
        sess = session_for(target, "svc")
        assert "key_filename" not in sess.conn.connect_kwargs
        assert sess.run("echo ok")[1].strip() == "ok"
    finally:
        close_all()


@pytest.mark.parametrize(("text", "says"), [
    ("not a key\n", "is not a private key without a passphrase"),
    ("-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
     "is not a private key without a passphrase"),
])
def test_a_file_that_is_no_key_is_one_clear_error(tmp_path, text, says):
    from cloudinitd.remote.keyfile import private_key

    (tmp_path / "k").write_text(text)
    with pytest.raises(RemoteError) as caught:
        private_key(tmp_path / "k", "svc")
    assert f"ssh key {tmp_path / 'k'} {says}" in str(caught.value)
    assert len(str(caught.value).splitlines()) == 1


# --- a name swapped between its check and its opening ------------------------------


def checks_by_name_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every check of a file by its name says "a regular file", as it would have just
    before the name was swapped for a FIFO or a device: only a check of the opened
    file can refuse it now. (Modules that no longer hold a check by name are skipped.)"""
    import importlib

    for name in ("cloudinitd.plan.limits", "cloudinitd.plan.services",
                 "cloudinitd.plan.placement", "cloudinitd.importer.ini",
                 "cloudinitd.importer.original", "cloudinitd.remote.session"):
        monkeypatch.setattr(importlib.import_module(name), "file_problem",
                            lambda *_a, **_k: None, raising=False)
    monkeypatch.setattr(Path, "is_file", lambda self: True)  # scripts.resolve_script


@pytest.mark.parametrize(("kind", "rows"), [
    ("fifo", ["host: 127.0.0.1", "boot: fifo"]),
    ("fifo", ["boot: b.sh", "hosts: {file: fifo}"]),
    ("devzero", ["boot: b.sh", "hosts: {file: /dev/zero}"]),
])
def test_a_plan_file_swapped_after_its_check_is_refused_not_waited_for(
        tmp_path, monkeypatch, kind, rows):
    hostile_folder(tmp_path)
    plan, line = new_plan(tmp_path, *rows)
    checks_by_name_pass(monkeypatch)
    with pytest.raises(PlanErrors) as caught:
        within(10, load_plan, plan)
    text = str(caught.value)
    assert len(text.splitlines()) == 1 and f"plan.yml:{line}: " in text, text
    assert "is not a regular file" in text, text


def test_a_var_file_swapped_after_its_check_is_refused(tmp_path, monkeypatch):
    from cloudinitd.cli.common import read_var_file

    hostile_folder(tmp_path)
    checks_by_name_pass(monkeypatch)
    with pytest.raises(UsageError) as caught:
        within(10, read_var_file, str(tmp_path / "fifo"))
    assert str(caught.value) == f"--var-file {tmp_path / 'fifo'}: cannot read: it is not a" \
                                " regular file"


@pytest.mark.parametrize(("conf", "key"), [
    ("top.conf", "level1"), ("level1.conf", "deps"), ("level1.conf", "bootconf"),
    ("level1.conf", "bootpgm")])
def test_an_original_plan_file_swapped_after_its_check_is_refused(
        tmp_path, monkeypatch, conf, key):
    """Level and deps files are read once, checked on the opened file; a bootconf is
    read and a program copied the same way, after the plan was read."""
    hostile_folder(tmp_path)
    top, line = original_plan(tmp_path, conf, key, "fifo")
    checks_by_name_pass(monkeypatch)
    with pytest.raises(UsageError) as caught:
        within(10, import_plan, top, tmp_path / "out", {})
    text = str(caught.value)
    assert caught.value.exit_code == 2
    assert len(text.splitlines()) == 1 and f"{conf}:{line}: " in text, text
    assert "is not a regular file" in text, text
    if key != "bootconf":  # read while converting: an essential note, as refs' errors are
        assert not (tmp_path / "out" / "plan.yml").exists()


def test_the_importer_reads_a_level_file_once(tmp_path, monkeypatch):
    """One check by name (before opening: a device may act on being opened) and one of
    the opened file; not a second stat by the importer before reading."""
    from cloudinitd.plan import limits

    top, _ = original_plan(tmp_path)
    seen: list[str] = []
    real = limits.file_problem

    def counted(path, *args):
        seen.append(Path(path).name)
        return real(path, *args)

    monkeypatch.setattr(limits, "file_problem", counted)
    import_plan(top, tmp_path / "out", {})
    assert seen.count("level1.conf") == 1 and seen.count("deps.conf") == 1, seen


def test_a_bundle_file_swapped_after_the_walk_is_not_copied(tmp_path, monkeypatch):
    """`files:` are walked again when a step runs; a name that became a device since
    (here /dev/null, harmless to open) is refused on the opened file."""
    from cloudinitd.remote import local

    monkeypatch.setattr(local, "walk_bundle",
                        lambda entry: iter([(Path("/dev/null"), "null", False)]))
    checks_by_name_pass(monkeypatch)
    (tmp_path / "w").mkdir()
    with pytest.raises(RemoteError) as caught:
        within(10, local._copy_files, tmp_path / "w", [Path("/dev/null")], "svc", "boot")
    assert str(caught.value) == "svc: boot failed: copying files: null is not a regular file"


def test_a_bundle_file_swapped_after_the_walk_is_not_uploaded(sshd_hosts, tmp_path,
                                                              monkeypatch):
    """The same over SFTP: paramiko gets the opened file, never the name."""
    from cloudinitd.remote import SshTarget, close_all, session_for, upload, wait_for_ssh

    (host,) = sshd_hosts(1)
    target = SshTarget(host.address, host.port, host.user, host.key_path, tmp_path / "kh",
                       "svc-0")
    monkeypatch.setattr(upload, "walk_bundle",
                        lambda entry: iter([(Path("/dev/null"), "null", False)]))
    checks_by_name_pass(monkeypatch)
    try:
        within(60, wait_for_ssh, target, 30, "svc")
        sess = session_for(target, "svc")
        with pytest.raises(RemoteError) as caught:
            within(10, upload.upload_files, sess, "/tmp", [Path("/dev/null")], "svc", "boot")
    finally:
        close_all()
    assert str(caught.value) == "svc: boot failed: uploading files: null is not a regular file"


# --- the answers themselves (plan/limits.py) --------------------------------------


def test_file_problem_names_each_kind_of_file(tmp_path):
    from cloudinitd.plan.limits import NOT_FOUND, file_problem, said

    hostile_folder(tmp_path)
    (tmp_path / "big").write_bytes(b"x" * 3000)
    assert file_problem(tmp_path / "b.sh") is None
    assert file_problem(tmp_path / "big", 3000) is None  # at the limit
    assert file_problem(tmp_path / "big", 2999) == "is larger than the limit of 2 KiB"
    (tmp_path / "bigger").write_bytes(b"x" * (2 * 1024 * 1024 + 1))
    assert file_problem(tmp_path / "bigger", 2 * 1024 * 1024) == \
        "is larger than the limit of 2048 KiB"
    assert file_problem(tmp_path / "nowhere") == NOT_FOUND == "not found"
    assert file_problem(tmp_path / "folder") == "is a folder, not a file"
    assert file_problem(tmp_path / "fifo") == "is not a regular file"
    assert file_problem(Path("/dev/zero")) == "is not a regular file"
    assert file_problem(tmp_path / "loop") == "cannot be used: Too many levels of symbolic links"
    assert file_problem(tmp_path / ("x" * 300)) == "cannot be used: File name too long"
    assert file_problem(tmp_path / "a\0b") == "cannot be used: embedded null byte"
    assert said(NOT_FOUND) == "no such file"
    assert said("is not a regular file") == "it is not a regular file"


def test_read_checked_gives_the_same_answers_from_the_opened_file(tmp_path, monkeypatch):
    from cloudinitd.plan import limits
    from cloudinitd.plan.limits import FileRefused, read_checked

    hostile_folder(tmp_path)
    (tmp_path / "big").write_bytes(b"x" * 3000)
    assert read_checked(tmp_path / "big", 3000) == b"x" * 3000
    monkeypatch.setattr(limits, "file_problem", lambda *_a, **_k: None)  # the fstat answers
    for name, limit, problem in [
            ("big", 2999, "is larger than the limit of 2 KiB"),
            ("nowhere", 10, "not found"),
            ("folder", 10, "is a folder, not a file"),
            ("fifo", 10, "is not a regular file"),
            ("/dev/zero", 10, "is not a regular file"),
            ("loop", 10, "cannot be used: Too many levels of symbolic links"),
            ("x" * 300, 10, "cannot be used: File name too long"),
            ("a\0b", 10, "cannot be used: embedded null byte")]:
        with pytest.raises(FileRefused) as caught:
            within(10, read_checked, tmp_path / name, limit)
        assert caught.value.problem == problem, name
        assert isinstance(caught.value, OSError) and caught.value.strerror == limits.said(problem)


@pytest.mark.parametrize(("size", "limit", "chunk", "refused"), [
    (3000, 3000, 65536, False),  # exactly the limit, in one large read: all of it
    (3000, 3000, 1000, False),   # in chunks: each as asked, then the end
    (3000, 3000, 7, False),
    (3001, 3000, 1000, True),    # one byte past it: refused on the read that crosses
    (3001, 3000, 65536, True),
    (10, None, 4, False),        # no limit: plain reads
    (1, 0, 10, True),            # a limit of 0: one byte is too many
])
def test_an_opened_file_reads_in_chunks_up_to_its_limit(tmp_path, size, limit, chunk, refused):
    """How SFTP uploads read `files:` (putfo): chunk by chunk, each no larger than asked,
    a file of exactly the limit whole, one byte more refused."""
    from cloudinitd.plan.limits import FileRefused, open_checked

    data = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    path = tmp_path / "f"
    path.write_bytes(data[:limit])
    got, sizes = b"", []
    with open_checked(path, limit) as f:
        with open(path, "ab") as grow:  # it grows after the check: only the reads see it
            grow.write(data[len(path.read_bytes()):])
        assert f.read(0) == b""  # nothing asked, nothing read (and nothing consumed)
        try:
            while piece := f.read(chunk):
                sizes.append(len(piece))
                got += piece
        except FileRefused as exc:
            assert refused and exc.too_big
            return
        assert f.read(0) == b""
    assert not refused and got == data
    assert max(sizes) <= chunk and all(n == chunk for n in sizes[:-1])


def test_the_guard_turns_an_endless_read_into_a_memory_error():
    """`within`'s address-space cap: what once got pytest OOM-killed fails one test."""
    import resource

    before = resource.getrlimit(resource.RLIMIT_AS)
    with open("/dev/zero", "rb") as zero, pytest.raises(MemoryError):
        within(20, zero.read)
    assert resource.getrlimit(resource.RLIMIT_AS) == before  # the run's own limit again
