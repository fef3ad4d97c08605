"""File names in a plan come from someone else.

Every field that names a file on this machine, given each kind of hostile
name, gets a one-line error at its own line (exit 2): never a traceback, a
hang (a FIFO), an endless read (/dev/zero) or a walk of a folder named
where a file belongs. New-format plans and original (TOP.conf) plans alike.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import tarfile
from pathlib import Path

import pytest

from cloudinitd.errors import PlanErrors, UsageError
from cloudinitd.importer import import_plan
from cloudinitd.plan.loader import load_plan
from tests.support.cli import Cli

ORIGINAL = Path(__file__).parent / "plans" / "original" / "chain"

# name -> the value written into the plan (relative ones are made in the plan folder)
HOSTILE = {
    "long": "x" * 300,  # longer than a file name may be: every stat() fails
    "deep": "d/" * 2100 + "x",  # longer than a path may be
    "fifo": "fifo",  # open() would wait for a writer forever
    "devzero": "/dev/zero",  # a read never ends
    "folder": "folder",  # a folder where a file belongs
    "loop": "loop",  # a symlink to itself
}


def hostile_folder(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    os.mkfifo(folder / "fifo")
    (folder / "folder").mkdir()
    (folder / "folder" / "f").write_text("x\n")
    (folder / "loop").symlink_to("loop")
    (folder / "b.sh").write_text("true\n")


class Hang(Exception):
    pass


def within(seconds: int, fn, *args):
    """Run fn; a hang (a FIFO opened for reading) fails the test instead of stalling it."""
    def alarm(*_):
        raise Hang(f"still running after {seconds} s")
    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        return fn(*args)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


# field -> the service's lines; the hostile value's line is the last one
FIELDS = {
    "boot": ["host: 127.0.0.1", "boot: '{v}'"],
    "files": ["host: 127.0.0.1", "boot:", "  script: b.sh", "  files: ['{v}']"],
    "hosts file": ["boot: b.sh", "hosts: {{file: '{v}'}}"],
    "ssh_key": ["host: 127.0.0.1", "boot: b.sh", "ssh_key: '{v}'"],
}


def new_plan(folder: Path, field: str, value: str) -> tuple[Path, int]:
    lines = ["name: t", "services:", "  a:"] + ["    " + s.format(v=value) for s in FIELDS[field]]
    (folder / "plan.yml").write_text("\n".join(lines) + "\n")
    return folder / "plan.yml", len(lines)


@pytest.mark.parametrize(("field", "kind"), [
    (f, k) for f in sorted(FIELDS) for k in sorted(HOSTILE)
    if (f, k) != ("files", "folder")])  # `files:` may name a folder: it ships as a bundle
def test_hostile_file_name_in_a_plan_is_a_plan_error_at_its_line(tmp_path, field, kind):
    hostile_folder(tmp_path)
    plan, line = new_plan(tmp_path, field, HOSTILE[kind])
    with pytest.raises(PlanErrors) as caught:
        within(20, load_plan, plan)
    text = str(caught.value)
    assert f"plan.yml:{line}: " in text, text
    assert len(text.splitlines()) == 1, text
    assert len(text) < 1200


def test_a_missing_ssh_key_is_accepted_at_load(tmp_path):
    """The key may live only where `boot` runs, or be gone by the time a run is
    terminated: the plan still loads (the connection says what is missing)."""
    hostile_folder(tmp_path)
    plan, _ = new_plan(tmp_path, "ssh_key", "nowhere/id_ed25519")
    loaded = load_plan(plan)
    assert loaded.services["a"].ssh_key == (tmp_path / "nowhere" / "id_ed25519").resolve()


def test_validate_says_one_line_and_exits_2_for_a_hostile_file_name(tmp_path, cli: Cli):
    hostile_folder(tmp_path / "p")
    plan, line = new_plan(tmp_path / "p", "files", HOSTILE["long"])
    result = cli("validate", str(plan), expect=2)
    errors = [s for s in result.err.splitlines() if s.strip()]
    assert len(errors) == 1 and f"plan.yml:{line}: " in errors[0], result.err
    assert "Traceback" not in result.err


# --- original plans -----------------------------------------------------------

ORIG_ENV = {"ORIG_OUT": "/srv/out", "ORIG_DB_HOST": "127.0.0.9:2222",
            "ORIG_WEB_HOST": "127.0.0.10", "ORIG_SSH_USER": "deploy"}


def chain_with(tmp_path: Path, file: str, key: str, value: str) -> tuple[Path, Path, int]:
    """The chain plan with `key:` in `file` set to `value` (added to [svc-db] when absent)."""
    folder = tmp_path / "chain"
    shutil.copytree(ORIGINAL, folder)
    with tarfile.open(folder / "bundle.tar.gz", "w:gz") as tar:  # as test_importer packs it
        tar.add(folder / "bundle", arcname="bundle")
    hostile_folder(folder)
    conf = folder / file
    lines = conf.read_text().splitlines()
    pattern = re.compile(rf"^{re.escape(key)}\s*:", re.IGNORECASE)
    hits = [i for i, s in enumerate(lines) if pattern.match(s)]
    if hits:
        lines[hits[0]] = f"{key}: {value}"
        line = hits[0] + 1
    else:
        at = lines.index("[svc-db]") + 1
        lines.insert(at, f"{key}: {value}")
        line = at + 1
    conf.write_text("\n".join(lines) + "\n")
    return folder / "top.conf", conf, line


ORIG_FIELDS = {  # field -> the file it is in
    "bootpgm": "level1.conf",
    "terminatepgm": "level1.conf",
    "bootconf": "level1.conf",
    "deps": "level1.conf",
    "localsshkeypath": "level1.conf",
    "level1": "top.conf",
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
@pytest.mark.parametrize("field", sorted(ORIG_FIELDS))
def test_hostile_file_name_in_an_original_plan_is_a_plan_error_at_its_line(
        tmp_path, field, kind):
    top, conf, line = chain_with(tmp_path, ORIG_FIELDS[field], field, HOSTILE[kind])
    with pytest.raises(UsageError) as caught:  # PlanError or PlanErrors: exit 2 either way
        within(20, import_plan, top, tmp_path / "out", ORIG_ENV)
    assert caught.value.exit_code == 2
    text = str(caught.value)
    assert f"{conf.name}:{line}: " in text, text
    assert len(text.splitlines()) == 1, text
    assert not (tmp_path / "out" / "plan.yml").exists()


def test_a_missing_level_file_is_still_an_empty_level(tmp_path):
    """As the original did; only a name that cannot be a file at all is refused."""
    top, _, _ = chain_with(tmp_path, "top.conf", "level3", "also-nowhere.conf")
    path, notes = import_plan(top, tmp_path / "out", ORIG_ENV)
    assert any("is missing" in n.message for n in notes)
    assert path.exists()


# --- the key a connection reads -------------------------------------------------


@pytest.mark.parametrize("kind", ["fifo", "devzero", "folder", "missing"])
def test_a_bad_ssh_key_fails_the_connection_at_once(sshd_hosts, tmp_path, kind):
    """The plan's key may change after it was loaded: the connection checks it again
    and fails with a clear error, without retrying until the SSH wait runs out."""
    from cloudinitd.errors import RemoteError
    from cloudinitd.remote import SshTarget, close_all, wait_for_ssh

    (host,) = sshd_hosts(1)
    hostile_folder(tmp_path)
    key = {"missing": tmp_path / "gone"}.get(kind) or (tmp_path / HOSTILE[kind])
    target = SshTarget(host.address, host.port, host.user, key, tmp_path / "kh", "svc-0")
    try:
        with pytest.raises(RemoteError) as caught:
            within(20, wait_for_ssh, target, 600, "svc")
    finally:
        close_all()
    assert str(caught.value).startswith(f"svc: ssh failed: ssh key {key} ")
    assert "after" not in str(caught.value)  # not the "no SSH after N s" of a wait


# --- --var-file: a YAML file that may come with someone else's plan --------------


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_a_hostile_var_file_name_is_refused_without_reading_it(tmp_path, monkeypatch, kind):
    from cloudinitd.cli.common import read_var_file

    hostile_folder(tmp_path)
    monkeypatch.chdir(tmp_path)  # the relative names are made here
    with pytest.raises(UsageError) as caught:
        within(20, read_var_file, HOSTILE[kind])
    assert caught.value.exit_code == 2
    assert len(str(caught.value).splitlines()) == 1


@pytest.mark.parametrize(("text", "says"), [
    ("a: " + "[" * 5000 + "]" * 5000 + "\n", "nested more than"),  # PyYAML: RecursionError
    ("a: &x [1, 2]\nb: *x\n", "a var is a string, number or boolean"),
])
def test_a_var_file_is_read_as_plans_are(tmp_path, text, says):
    from cloudinitd.cli.common import read_var_file

    (tmp_path / "vars.yml").write_text(text)
    with pytest.raises(UsageError) as caught:
        within(20, read_var_file, str(tmp_path / "vars.yml"))
    assert says in str(caught.value) and "vars.yml:" in str(caught.value)


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
