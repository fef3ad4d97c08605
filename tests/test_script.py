"""The pure half of running a remote step: the command line, run by a real shell here.

`build_command` is what carries plan values to the remote shell, so every
hostile value must arrive byte for byte as data, never as shell syntax. The
command line is run with the real /bin/sh (the remote side runs the same
line through the login shell); tests/test_remote.py runs it over SSH.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import time
from datetime import UTC, datetime

import pytest

from cloudinitd.errors import RemoteError
from cloudinitd.remote.script import (
    KILL_AFTER,
    MAX_EXPORT,
    TAIL_LINES,
    StepLog,
    build_command,
    check_env,
    check_name,
    env_file,
    interpreter,
    is_shell,
    parse_export,
    parse_trailer,
    step_env,
    with_env_source,
)

HOSTILE = ["$(touch pwned)", "`touch pwned`", "a;touch pwned", "a|touch pwned", ">pwned",
           "*", "a b\tc", "'\"\\", "line1\nline2", "$HOME", "-n", ""]


def _run(tmp_path, env, argv=("sh",), script="env > seen\n", timeout=5.0, workdir=None):
    work = workdir or tmp_path / "work dir $(x)"
    work.mkdir(exist_ok=True)
    (work / "export").write_text("stale")
    (work / "glob-target").write_text("")  # a glob has something to expand to
    path = work / "step script"
    # Values travel in an env file the step sources, never on the command line.
    env_path = work / "step env"
    shell = is_shell(list(argv))
    env_path.write_text(env_file(env, shell))
    path.write_text(with_env_source(script, str(env_path)) if shell else script)
    cmd = build_command(str(work), str(path), list(argv), str(env_path), timeout, sudo=False)
    assert all(v not in cmd for v in env.values() if len(v) > 2)
    proc = subprocess.run(["sh", "-c", cmd], cwd=tmp_path, capture_output=True, text=True,
                          timeout=30)
    return work, cmd, proc


def test_hostile_values_arrive_intact_and_run_nothing(tmp_path):
    env = {f"V{i}": v for i, v in enumerate(HOSTILE)}
    script = "\n".join(f'printf "%s\\0" "$V{i}" >> seen' for i in range(len(HOSTILE))) + "\n"
    work, _, proc = _run(tmp_path, env, script=script)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (work / "seen").read_text().split("\0")[:-1] == HOSTILE
    assert not (work / "pwned").exists() and not (tmp_path / "pwned").exists()


def test_the_line_cds_clears_the_old_export_and_records_its_pid(tmp_path):
    work, _, proc = _run(tmp_path, {"A": "1"}, script='echo out; echo err >&2; pwd > where\n')
    assert proc.returncode == 0
    assert proc.stdout == "out\nerr\n" and proc.stderr == ""  # stderr joins stdout
    assert (work / "where").read_text().strip() == str(work)
    assert not (work / "export").exists()
    assert re.fullmatch(r"\d+\n", (work / "pid").read_text())


def test_stdin_is_empty_and_exit_status_passes_through(tmp_path):
    _, _, proc = _run(tmp_path, {}, script="read line && exit 9; exit 4\n")
    assert proc.returncode == 4


def test_argv_and_script_path_are_quoted(tmp_path):
    _, cmd, proc = _run(tmp_path, {}, argv=["sh", "-e"], script="false\necho not reached\n")
    assert proc.returncode == 1 and "not reached" not in proc.stdout
    assert "'sh' '-e'" in cmd or "sh -e '" in cmd


def test_timeout_is_rounded_up_to_whole_seconds_at_least_one(tmp_path):
    for given, limit in ((0.2, 1), (1.0, 1), (1.1, 2), (30, 30)):
        cmd = build_command("/w", "/w/s", ["sh"], "/w/env", given, sudo=False)
        assert f"T='timeout -k {KILL_AFTER} {limit}'" in cmd, (given, cmd)
    _, _, proc = _run(tmp_path, {}, script="sleep 5\n", timeout=0.1)
    assert proc.returncode == 124  # timeout(1) ended it after 1 s


def test_sudo_prefix_only_when_asked():
    plain = build_command("/w", "/w/s", ["sh"], "/w/env", 5, sudo=False)
    sudo = build_command("/w", "/w/s", ["sh"], "/w/env", 5, sudo=True)
    assert "sudo" not in plain
    assert sudo.replace("exec sudo -n ", "exec ") == plain


@pytest.mark.parametrize("key", ["", "1A", "A-B", "A B", "A=B", "$(x)", "A;B", "A\n"])
def test_bad_environment_names_are_refused(key):
    with pytest.raises(ValueError, match=re.escape(f"invalid environment variable name {key!r}")):
        check_env({"OK_1": "x", key: "v"})


def test_step_env_sets_the_cloudinitd_names_last():
    env = step_env("r", "svc", 3, "boot", "/x/export", {"A": 1, "CLOUDINITD_RUN": "forged"})
    assert env == {"A": "1", "CLOUDINITD_RUN": "r", "CLOUDINITD_SERVICE": "svc",
                   "CLOUDINITD_INDEX": "3", "CLOUDINITD_STEP": "boot",
                   "CLOUDINITD_EXPORT": "/x/export"}


@pytest.mark.parametrize(("script", "argv"), [
    ("#!/usr/bin/env python3\nprint(1)\n", ["/usr/bin/env", "python3"]),
    ("#!/bin/bash -eu\r\necho\n", ["/bin/bash", "-eu"]),
    ("#!\necho\n", ["sh"]),
    ("#!   \n", ["sh"]),
    ("echo hi\n#!/bin/bash\n", ["sh"]),
    ("", ["sh"]),
    (" #!/bin/bash\n", ["sh"]),
    ("\r#!/bin/bash\n", ["sh"]),  # the kernel would not take this as a shebang either
    ("#!/opt/X\n", ["/opt/X"]),
])
def test_interpreter_reads_only_the_first_line(script, argv):
    assert interpreter(script) == argv


@pytest.mark.parametrize(("text", "expected"), [
    ("", {}),
    ("  \n\n", {}),
    ('  {"a": [1, {"b": null}]}  \n', {"a": [1, {"b": None}]}),
    ("a=1\n# note\n\n  b.c-d =  x=y  \n_e=\n", {"a": "1", "b.c-d": "x=y", "_e": ""}),
])
def test_export_files(text, expected):
    assert parse_export(text, "w") == expected


@pytest.mark.parametrize(("text", "message"), [
    ("[1, 2]", "malformed export file w: JSON must be an object"),
    ('{"a": }', "malformed export file w: invalid JSON at line 1: Expecting value"),
    ('{\n"a": 1,\n}', "malformed export file w: invalid JSON at line 3:"),
    ("a=1\njust words", "malformed export file w: line 2 is not key=value: 'just words'"),
    ("a=1\n\n-x=1", "malformed export file w: line 3 is not key=value: '-x=1'"),
    ("=1", "malformed export file w: line 1 is not key=value: '=1'"),
    ("x" * 100, "line 1 is not key=value: '" + "x" * 60 + "'"),
])
def test_bad_export_files_say_where_and_why(text, message):
    with pytest.raises(ValueError) as err:
        parse_export(text, "w")
    assert message in str(err.value)


@pytest.mark.parametrize(("text", "where"), [
    ("a=1\nb=2\nc=x\0y\n", "line 3 has a NUL byte"),
    ("\0", "line 1 has a NUL byte"),
    ("a=1\n\n\n\0=2", "line 4 has a NUL byte"),
    ('{"a": "x\\u0000y"}', "key 'a' holds a NUL"),
    ('{"k\\u0000": 1}', "key 'k\\x00' holds a NUL"),
    ('{"a": {"b": [1, "ok", "n\\u0000"]}}', "key 'a'['b'][2] holds a NUL"),
    ('{"a": ["ok"], "z": {"y\\u0000": 2}}', "key 'z'['y\\x00'] holds a NUL"),
])
def test_an_export_holding_a_nul_is_refused_where_it_is(text, where):
    # A NUL cannot reach a script's environment or argv intact: refused, with its place.
    with pytest.raises(ValueError) as err:
        parse_export(text, "h:/x/export")
    assert str(err.value).startswith("export file h:/x/export: ")
    assert where in str(err.value), str(err.value)


@pytest.mark.parametrize(("data", "expected"), [
    (b"", None),  # nothing yet
    (b"0 -", None),  # the line is not complete yet
    (b"0 -\n", (0, "-", b"")),  # no export file
    (b"3 ?\nleft over", (3, "?", b"")),  # an export file it could not read
    (b"-1 -\n", (-1, "-", b"")),
    (b"0 5\nabcdefg", (0, "5", b"abcde")),  # exactly the size announced
    (b"0 5\nabc", None),  # the rest is still coming
    (b"0 0\n", (0, "0", b"")),
    (b"7 %d\n" % (MAX_EXPORT + 1), (7, str(MAX_EXPORT + 1), b"")),  # too big: not sent
    (b"0 %d\n" % MAX_EXPORT + b"x" * MAX_EXPORT, (0, str(MAX_EXPORT), b"x" * MAX_EXPORT)),
])
def test_a_step_trailer_is_read_as_status_state_and_export(data, expected):
    assert parse_trailer(data) == expected


@pytest.mark.parametrize("data", [
    b"x -\n", b"0\n", b"0 - extra\n", b"0 abc\n", b"0 \xff\n", b"- -\n", b"\n",
    b"0 " + b"9" * 100 + b"z\n",
])
def test_a_trailer_the_host_mangled_is_refused_with_its_start(data):
    # The trailer comes from the host: anything but "STATUS -|?|SIZE" is refused.
    with pytest.raises(ValueError) as err:
        parse_trailer(data)
    head = data.partition(b"\n")[0]
    assert str(err.value) == f"unexpected step trailer {head[:80]!r}"


@pytest.mark.parametrize("name", ["a", "web-0", "A.b_c", "9" * 128])
def test_safe_names(name):
    check_name("service", name, "svc", "boot")


@pytest.mark.parametrize("name", ["", ".hidden", "-x", "a/b", "..", "a b", "9" * 129, "a\n"])
def test_unsafe_names_are_refused(name):
    with pytest.raises(RemoteError) as err:
        check_name("service", name, "svc", "boot")
    assert str(err.value) == f"svc: boot failed: unsafe service name for a remote path: {name!r}"
    assert (err.value.service, err.value.step) == ("svc", "boot")


def test_step_log_is_private_appends_and_keeps_the_tail(tmp_path):
    path = tmp_path / "logs" / "svc-0.log"
    path.parent.mkdir()
    path.write_text("earlier run\n")
    path.chmod(0o644)
    log = StepLog(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    log.header("boot attempt 1")
    log.write(b"".join(b"line %d\n" % i for i in range(50)))
    log.note("exit 3")
    log.close()
    text = path.read_text()
    assert text.startswith("earlier run\n=== ")
    assert re.search(r"^=== \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ boot attempt 1 ===$", text, re.M)
    assert text.endswith("line 49\n--- exit 3 ---\n")
    assert log.tail() == "\n".join(f"line {i}" for i in range(50 - TAIL_LINES, 50))


def test_step_log_keeps_memory_bounded(tmp_path):
    log = StepLog(tmp_path / "deep" / "er" / "x.log")
    assert stat.S_IMODE((tmp_path / "deep" / "er").stat().st_mode) == 0o700
    for _ in range(40):
        log.write(b"y" * 1000 + b"\n")
    assert len(log.recent) <= 32768
    log.write(b"last\n")
    assert log.tail().endswith("last")
    log.close()
    assert os.path.getsize(tmp_path / "deep" / "er" / "x.log") == 40 * 1001 + 5


def test_step_log_tail_spans_writes_and_keeps_32k_whole(tmp_path):
    log = StepLog(tmp_path / "x.log")
    log.write(b"first\n")
    log.write(b"second\n")
    assert log.tail() == "first\nsecond"
    # Up to 32 KiB of recent output is kept whole: 20 lines of 1638.4 bytes on average.
    log = StepLog(tmp_path / "y.log")
    lines = [b"%02d" % i + b"z" * 1635 + b"\n" for i in range(19)]
    lines.append(b"19" + b"z" * (32768 - 1 - 2 - sum(map(len, lines))) + b"\n")
    log.write(b"".join(lines))
    assert len(b"".join(lines)) == 32768
    assert log.tail() == b"".join(lines).decode().rstrip("\n")
    log.close()


def test_step_log_reaches_the_file_at_once_and_stamps_utc(tmp_path, monkeypatch):
    # Read while the step still runs (`cloudinitd logs`), or after the process died.
    monkeypatch.setenv("TZ", "Asia/Kathmandu")  # +05:45: a local-time stamp would show
    time.tzset()
    try:
        log = StepLog(tmp_path / "x.log")
        log.header("boot")
        log.write(b"partial line")
        text = (tmp_path / "x.log").read_text()
        log.close()
    finally:
        monkeypatch.undo()
        time.tzset()
    stamp = re.match(r"=== (\S+) boot ===\npartial line$", text).group(1)
    written = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - written).total_seconds()) < 120


def test_step_log_bounds_one_huge_write_and_survives_bad_utf8(tmp_path):
    log = StepLog(tmp_path / "x.log")
    log.write(b"a" * 100_000 + b"\n\xff\xfe not utf-8\n")
    assert len(log.recent) <= 32768
    assert log.tail().endswith("\ufffd\ufffd not utf-8")
    log.close()
