"""The pure half of running a remote step: the command line, run by a real shell here.

`build_command` is what carries plan values to the remote shell, so every
hostile value must arrive byte for byte as data, never as shell syntax. The
command line is run with the real /bin/sh (the remote side runs the same
line through the login shell); tests/test_remote.py runs it over SSH.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cloudinitd.errors import RemoteError
from cloudinitd.remote.script import (
    ENV_STRING_MAX,
    KILL_AFTER,
    MAX_EXPORT,
    PREP_FAILED,
    TAIL_LINES,
    StepLog,
    build_command,
    check_env,
    check_inputs,
    check_name,
    env_file,
    interpreter,
    is_shell,
    oneshot_command,
    parse_export,
    parse_trailer,
    step_env,
    with_env_source,
)
from tests.support.sshd import SUDO_USER, ensure_sudo_user

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


@pytest.mark.parametrize(("argv", "shell"), [
    (["sh"], True), (["/bin/bash", "-e"], True), (["busybox"], True),
    (["/usr/bin/env", "bash"], True), (["env", "/bin/sh"], True),
    (["/usr/bin/env", "-S", "dash", "-x"], True),  # options of env are skipped
    (["/usr/bin/env", "A=1", "-i", "zsh"], True),  # and so are its assignments
    (["/usr/bin/env", "python3"], False), (["/usr/bin/env"], False),
    (["/usr/bin/env", "-i", "A=sh"], False), (["/usr/bin/python3"], False),
    (["/usr/bin/perl", "-w"], False), (["/opt/ENV", "sh"], False), (["/bin/envy", "sh"], False),
])
def test_shell_interpreters_are_recognised(argv, shell):
    # A shell sources its env file itself; any other interpreter is started by `sh`.
    assert is_shell(argv) is shell


def test_a_command_for_the_oneshot_leaves_the_export_to_it(tmp_path):
    work = tmp_path / "w"
    work.mkdir()
    (work / "export").write_text("fresh=1\n")  # the one-shot command cleared the old one
    cmd = build_command(str(work), "/dev/null", ["sh"], "/dev/null", 5, sudo=False,
                        clear_export=False)
    subprocess.run(["sh", "-c", cmd], check=True, capture_output=True, timeout=30)
    assert (work / "export").read_text() == "fresh=1\n"
    assert "rm" not in cmd  # one program less to start on the host


# Linux refuses an environment string (`KEY=value`) of ENV_STRING_MAX bytes or more.
EDGE = ENV_STRING_MAX - len("K=") - 1  # the longest value of K (in bytes) that still fits


@pytest.mark.parametrize(("value", "exported"), [
    ("it's $HOME `x`", True),
    ("y" * EDGE, True),
    ("y" * (EDGE + 1), False),
    ("é" * (EDGE // 2), True),  # counted in bytes, not characters
    ("é" * (EDGE // 2 + 1), False),
])
def test_env_file_exports_what_a_program_can_hold(value, exported):
    line = f"K={shlex.quote(value)}\n"
    assert env_file({"K": value}, shell=True) == ("export " if exported else "") + line
    if exported:
        assert env_file({"K": value}, shell=False) == "export " + line
        return
    # Only a shell can take it, as a variable of its own; any other interpreter is refused.
    with pytest.raises(ValueError) as err:
        env_file({"K": value}, shell=False)
    assert str(err.value) == (
        f"env value K is {len(value.encode())} bytes: a program's environment holds at most"
        " 128 KiB per variable; a shell script (#!/bin/sh) receives it as a shell variable")


def test_a_value_too_large_to_export_reaches_the_script_but_not_its_children(tmp_path):
    big = "y" * (EDGE + 1)
    script = ('printf "%s %s" "${#BIG}" "$SMALL" > mine\n'
              'sh -c \'printf "%s %s" "${#BIG}" "$SMALL"\' > child\n')
    work, _, proc = _run(tmp_path, {"BIG": big, "SMALL": "s m"}, script=script)
    assert proc.returncode == 0, proc.stdout
    assert (work / "mine").read_text() == f"{len(big)} s m"
    assert (work / "child").read_text() == "0 s m"


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
    ("\n\0", "line 2 has a NUL byte"),  # counted from the first character
    ("a\0\nb\0", "line 1 has a NUL byte"),  # the first NUL, not the last
])
def test_an_export_holding_a_nul_is_refused_where_it_is(text, where):
    # A NUL cannot reach a script's environment or argv intact: refused, with its place.
    with pytest.raises(ValueError) as err:
        parse_export(text, "h:/x/export")
    assert str(err.value).startswith("export file h:/x/export: ")
    assert where in str(err.value), str(err.value)
    assert str(err.value).endswith(
        "; exported values are text that scripts and environments can hold")


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
    b"X1 -\n", b"-X1 -\n",  # only a minus sign may come before the digits
    b"x" * 100 + b" -\n",  # quoted up to its 80th byte
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


def test_step_log_remembers_output_it_does_not_store(tmp_path):
    log = StepLog(tmp_path / "x.log")
    log.write(b"stored\n")
    log.remember(b"only in the tail\n")
    assert log.tail() == "stored\nonly in the tail"
    log.close()
    assert (tmp_path / "x.log").read_bytes() == b"stored\n"


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
    # One byte more: only the last 16 KiB are kept, so the tail starts inside a line.
    log = StepLog(tmp_path / "z.log")
    data = b"".join(lines) + b"!"
    log.write(data)
    kept = data[-16384:].decode()
    assert log.tail() == "\n".join(kept.splitlines()[-TAIL_LINES:])
    assert len(log.tail().splitlines()) < TAIL_LINES  # the lines before the cut are gone
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


@pytest.mark.parametrize(("script", "line"), [
    ("\0", 1), ("echo a\n\necho \0b\n", 3), ("\n\0", 2), ("a\0\nb\0\n", 1),
])
def test_a_script_holding_a_nul_is_refused_before_connecting(script, line):
    with pytest.raises(RemoteError) as err:
        check_inputs(script, {"A": "1"}, "svc", "ready")
    assert str(err.value) == (f"svc: ready failed: the rendered ready script has a NUL byte"
                              f" on line {line}; a shell would silently drop it")
    assert (err.value.service, err.value.step) == ("svc", "ready")


@pytest.mark.parametrize(("env", "message"), [
    ({"OK": "1", "A B": "1"}, "invalid environment variable name 'A B'"),
    ({"A": "ab\0c\0"}, "env value A contains a NUL byte (at character 2), which no"
                        " environment or shell can hold"),
])
def test_an_env_no_host_can_hold_is_refused_before_connecting(env, message):
    with pytest.raises(RemoteError) as err:
        check_inputs("echo ok\n", env, "svc", "boot")
    assert str(err.value) == f"svc: boot failed: {message}"
    assert (err.value.service, err.value.step) == ("svc", "boot")
    with pytest.raises(ValueError) as err:
        check_env(env)
    assert str(err.value) == message


def test_inputs_a_host_can_run_pass():
    assert check_inputs("echo ok\n# no NUL here\n", {"A": "x y", "_B": "", "c1": "\n"},
                        "svc", "boot") is None


# --- the one-shot channel: folder, env file, script, run and export in one command ----


def _oneshot(work, script, env=None, prepare=None):
    """Run the one-shot command the way steps.py builds it, with its stdin, in a real sh."""
    env_path, script_path = f"{work}/boot.env", f"{work}/boot.script"
    env_bytes = env_file(step_env("r1", "svc", 0, "boot", f"{work}/export", env or {}),
                         True).encode()
    body = with_env_source(script, env_path).encode()
    run = build_command(str(work), script_path, ["sh"], env_path, 5, sudo=False,
                        clear_export=False)
    cmd = oneshot_command(str(work), "boot", len(env_bytes), run, sudo=False)
    return subprocess.run(["sh", "-c", cmd], input=env_bytes + body, capture_output=True,
                          cwd="/", timeout=30)


def test_oneshot_writes_private_files_runs_the_step_and_sends_the_export_after(tmp_path):
    work = tmp_path / "runs $(touch pwned)" / "svc-0"
    hostile = {f"V{i}": v for i, v in enumerate(HOSTILE)}
    script = ("printf '%s\\0' " + " ".join(f'"$V{i}"' for i in range(len(HOSTILE)))
              + ' > seen\necho out; echo err >&2\nprintf \'a=1\\nb=$(x)\\n\' > "$CLOUDINITD_EXPORT"'
              "\nexit 3\n")
    proc = _oneshot(work, script, hostile)
    assert proc.returncode == 3
    assert proc.stdout == b"out\nerr\n"  # the step's output, stderr joined
    # The trailer: status, size, then exactly the export file's bytes.
    assert proc.stderr == b"3 11\na=1\nb=$(x)\n"
    assert parse_trailer(proc.stderr) == (3, "11", b"a=1\nb=$(x)\n")
    assert (work / "seen").read_bytes().split(b"\0")[:-1] == [v.encode() for v in HOSTILE]
    assert not list(tmp_path.rglob("pwned"))
    # The env file ends where the announced byte count says; the script is the rest.
    assert (work / "boot.env").read_text().endswith("CLOUDINITD_EXPORT=" +
                                                   shlex.quote(f"{work}/export") + "\n")
    assert (work / "boot.script").read_text() == with_env_source(script, f"{work}/boot.env")
    assert stat.S_IMODE(work.stat().st_mode) == 0o700
    for name in ("boot.env", "boot.script", "export", "pid"):
        assert stat.S_IMODE((work / name).stat().st_mode) == 0o600, name


def test_oneshot_without_an_export_says_so_and_drops_an_earlier_one(tmp_path):
    work = tmp_path / "svc-0"
    work.mkdir()
    (work / "export").write_text("stale=1\n")  # left by the previous step
    proc = _oneshot(work, "echo hi\n")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, b"hi\n", b"0 -\n")


def test_oneshot_does_not_send_an_export_over_the_limit(tmp_path):
    work = tmp_path / "svc-0"
    proc = _oneshot(work, f'head -c {MAX_EXPORT + 1} /dev/zero | tr "\\0" x > export\n')
    assert (proc.returncode, proc.stderr) == (0, b"0 %d\n" % (MAX_EXPORT + 1))
    proc = _oneshot(work, f'head -c {MAX_EXPORT} /dev/zero | tr "\\0" x > export\n')
    assert proc.stderr == b"0 %d\n" % MAX_EXPORT + b"x" * MAX_EXPORT


def test_oneshot_replaces_links_left_in_the_folder_without_following_them(tmp_path):
    work = tmp_path / "svc-0"
    work.mkdir(mode=0o755)
    outside = tmp_path / "outside"
    outside.write_text("keep\n")
    for name in ("boot.env", "boot.script", "export", ".export"):
        (work / name).symlink_to(outside)
    proc = _oneshot(work, "echo hi\n")
    assert (proc.returncode, proc.stderr) == (0, b"0 -\n")
    assert outside.read_text() == "keep\n"
    assert not (work / ".export").exists() and not (work / "export").is_symlink()
    assert not (work / "boot.env").is_symlink() and not (work / "boot.script").is_symlink()


def test_oneshot_that_cannot_make_its_folder_exits_with_prep_failed(tmp_path):
    (tmp_path / "file").write_text("")
    work = tmp_path / "file" / "svc-0"  # under a regular file: mkdir fails
    proc = _oneshot(work, "touch ran\n")
    assert proc.returncode == PREP_FAILED
    assert b"file" in proc.stdout and proc.stderr == b""  # the reason, on the output
    assert not (tmp_path / "ran").exists()


@pytest.fixture
def sudo_user_dir():
    """A folder the password-less sudo user (tests/support/sshd.py) owns, outside root's
    private pytest folders, which that user could not enter."""
    if os.geteuid() != 0:
        pytest.fail("running a command as the sudo test user needs root", pytrace=False)
    ensure_sudo_user()
    base = Path(tempfile.mkdtemp(prefix="cid-oneshot-"))
    try:
        base.chmod(0o755)
        work = base / "svc-0"
        work.mkdir()
        shutil.chown(work, SUDO_USER, SUDO_USER)
        yield work
    finally:
        shutil.rmtree(base)


@pytest.mark.parametrize(("sudo", "trailer"), [
    (True, b"0 4\na=1\n"),  # root's 0600 export comes back through `sudo -n cat`
    (False, b"0 ?\n"),  # without sudo an unreadable export is reported, not read
])
def test_oneshot_as_a_login_user_reads_the_export_through_sudo_only_when_asked(
        sudo_user_dir, sudo, trailer):
    work = sudo_user_dir
    script = 'printf "a=1\\n" > "$CLOUDINITD_EXPORT"\nchmod 000 export\necho "$(id -un)"\n'
    env_path, script_path = f"{work}/boot.env", f"{work}/boot.script"
    env_bytes = env_file(step_env("r1", "svc", 0, "boot", f"{work}/export", {}), True).encode()
    run = build_command(str(work), script_path, ["sh"], env_path, 5, sudo=sudo,
                        clear_export=False)
    cmd = oneshot_command(str(work), "boot", len(env_bytes), run, sudo=sudo)
    proc = subprocess.run(["sh", "-c", cmd], input=env_bytes + with_env_source(script, env_path)
                          .encode(), capture_output=True, cwd="/", user=SUDO_USER, timeout=30)
    assert (proc.returncode, proc.stderr) == (0, trailer), proc.stdout
    assert proc.stdout.decode().strip() == ("root" if sudo else SUDO_USER)
    assert not (work / ".export").exists()  # the copy read through sudo is gone
