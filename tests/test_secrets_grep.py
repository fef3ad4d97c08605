"""The grep test (issue 9): secrets handed to cloudinitd never appear in its files or output.

On EC2 test clouds (moto processes on 127.0.0.1), with the keys in
environment variables that the catalog and the plan name, a real user's
session runs: bad cloud entries (a key and password in the endpoint URL,
secrets under wrong keys, a key pasted where a variable name belongs) are
each refused at load time with exit 2 and one located line; then boots (one
with a script on a real loopback sshd that prints its whole environment),
a failing boot (a full cloud and a failing script), scales, status,
history, logs, terminate and clean. Afterwards no secret string is found in
any file under $CLOUDINITD_HOME (state.db and its WAL, kept alive by an
open reader, logs, keys) nor in any stdout/stderr/--json output.
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest

from tests.support.cli import Cli, Result, write_plan

AK = "AKIAGREPTESTK3Y00001"
SK = "gReP/s3cr3t+AccessKey-9e1d7c"
TOKEN = "gReP-s3ss10nT0ken-4b2a1f"
URL_USER = "AKIAGREPURLUSER00001"
URL_PASS = "gReP-urlPassw0rd-77aa"
WRONG = "gReP-wrongKey-s3cr3t-5c5c"
SECRETS = [AK, SK, TOKEN, URL_USER, URL_PASS, WRONG]
ENV = {"GREP_AK": AK, "GREP_SK": SK, "GREP_ST": TOKEN, "CLOUDINITD_DEBUG": "1"}

# Each bad entry carries a secret on the line at fault (the line the error must name).
BAD_ENTRIES = {
    "userinfo-in-endpoint": """
        provider: ec2
        region: us-east-1
        endpoint: http://{URL_USER}:{URL_PASS}@127.0.0.1:{port}/
    """,
    "wrong-key": """
        provider: ec2
        region: us-east-1
        key: {WRONG}
    """,
    "secret-key-name": """
        provider: ec2
        aws_secret_access_key: {WRONG}
    """,
    "secret-in-credentials": """
        provider: ec2
        credentials: {{access_key_env: GREP_AK, secret_key: "{SK}"}}
    """,
    "token-in-credentials": """
        provider: ec2
        credentials: {{access_key_env: GREP_AK, secret_key_env: GREP_SK, session_token: {TOKEN}}}
    """,
    "key-pasted-as-variable-name": """
        provider: ec2
        credentials: {{access_key_env: {AK}, secret_key_env: GREP_SK}}
    """,
}


class Session:
    """A Cli that keeps every output, to be searched for secrets at the end."""

    def __init__(self, home: Path):
        self.cli = Cli(home, env=ENV)
        self.outputs: list[str] = []

    def __call__(self, *args: str | Path, expect: int | None = 0) -> Result:
        res = self.cli(*args, expect=expect)
        self.outputs += [res.out, res.err]
        return res


def _indent(block: str, by: int) -> str:
    lines = [line.strip() for line in block.strip().splitlines()]
    return "\n".join(" " * by + line for line in lines)


def _line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def _assert_refused(res: Result, path: Path, line: int) -> None:
    lines = res.err.strip().splitlines()
    assert res.code == 2 and len(lines) == 1, res.err
    assert re.match(rf"^cloudinitd: error: {re.escape(str(path))}:{line}: cloud 'bad': ", lines[0])


def _secrets_in(data: bytes) -> list[str]:
    return [s for s in SECRETS if s.encode() in data]


@pytest.mark.slow
def test_no_secret_anywhere_after_boots_failures_scales_and_terminates(
    tmp_path, ec2_cloud, sshd_hosts
):
    a, b, full = ec2_cloud("a"), ec2_cloud("b"), ec2_cloud("full", quota=0)
    db_host, broken_host = sshd_hosts(2)
    b.set_pool([db_host.address, broken_host.address])
    home = tmp_path / "home"
    home.mkdir()
    run = Session(home)
    catalog = home / "clouds.yml"
    good_catalog = (
        "good:\n"
        "  provider: ec2\n"
        f"  endpoint: {a.endpoint}\n"
        "  region: us-east-1\n"
        "  credentials: {access_key_env: GREP_AK, secret_key_env: GREP_SK,"
        " session_token_env: GREP_ST}\n"
    )
    inline = (
        f"{{provider: ec2, endpoint: '{b.endpoint}', region: us-east-1,"
        " credentials: {access_key_env: GREP_AK, secret_key_env: GREP_SK}}"
    )
    plan = write_plan(
        tmp_path / "p",
        f"""
        name: grep
        clouds:
          inl: {inline}
        defaults:
          image: ami-12345678
          ssh_key: {db_host.key_path}
        services:
          web:
            cloud: good
            count: 2
          db:
            cloud: inl
            ssh_port: {db_host.port}
            boot: db.sh
        """,
        {"db.sh": "env | sort\necho db booted\n"},
    )
    failing = write_plan(
        tmp_path / "f",
        f"""
        name: failing
        clouds:
          inl: {inline}
          full: {{provider: ec2, endpoint: '{full.endpoint}', region: us-east-1,
                  credentials: {{access_key_env: GREP_AK, secret_key_env: GREP_SK}}}}
        defaults:
          image: ami-12345678
          ssh_key: {broken_host.key_path}
        services:
          nowhere:
            cloud: full
          broken:
            cloud: inl
            ssh_port: {broken_host.port}
            boot: broken.sh
        """,
        {"broken.sh": "env | sort\necho about to fail\nexit 3\n"},
    )

    # 1. Every bad entry is refused at load time: exit 2, one line at the faulty line.
    secrets = {"URL_USER": URL_USER, "URL_PASS": URL_PASS, "WRONG": WRONG, "SK": SK,
               "TOKEN": TOKEN, "AK": AK, "port": a.port}  # fmt: skip
    for i, bad in enumerate(BAD_ENTRIES.values()):
        entry = bad.format(**secrets)
        # (`clouds` and `validate` take the same load path; each entry is also
        # checked through `clouds` alone in the test below.)
        more = [("clouds", "--json"), ("validate", plan)] if i == 0 else []
        catalog.write_text(good_catalog + "bad:\n" + _indent(entry, 2) + "\n")
        line = _line_of(catalog, next(s for s in SECRETS if s in entry))
        for args in [*more, ("boot", plan, "--name", "x", "--json")]:
            _assert_refused(run(*args, expect=None), catalog, line)
        bad_plan = write_plan(
            tmp_path / "bad",
            "clouds:\n  bad:\n" + _indent(entry, 4) + "\nservices:\n  w: {cloud: bad}\n",
        )
        line = _line_of(bad_plan, next(s for s in SECRETS if s in entry))
        catalog.write_text(good_catalog)
        _assert_refused(run("boot", bad_plan, "--name", "y", expect=None), bad_plan, line)
    assert run("list", "--json").json() == []  # nothing was recorded for any of them

    # 2. A session: boots, a failing boot, scales, status, logs, terminate, clean.
    run("clouds", "--check", "--json")
    run("boot", plan, "--dry-run", "--json")
    assert run("boot", plan, "--name", "grep", "--json").json()["ok"] is True
    # An open reader keeps state.db's WAL on disk, so it is searched too.
    reader = sqlite3.connect(home / "state.db")
    try:
        recorded = json.loads(
            reader.execute("SELECT clouds_json FROM runs WHERE name = 'grep'").fetchone()[0]
        )
        assert recorded["good"]["options"]["credentials"] == {
            "access_key_env": "GREP_AK",
            "secret_key_env": "GREP_SK",
            "session_token_env": "GREP_ST",
        }
        assert set(recorded["inl"]["options"]) == {"endpoint", "region", "credentials"}
        res = run("boot", failing, "--name", "failing", "--json", expect=1)
        assert res.json()["ok"] is False
        run("scale", "grep", "web", "4", "--json")
        assert len(a.live_instances("grep")) == 4
        run("scale", "grep", "web", "1", "--json")
        for args in (("status", "grep"), ("history", "grep"), ("list",), ("logs", "grep")):
            run(*args)
            run(*args, "--json")
        run("logs", "failing", "broken")
        run("terminate", "failing", "--json")
        run("clean", "failing", "--json")
        run("terminate", "grep", "--json")
        assert a.live_instances("grep") == [] and b.live_instances("grep") == []
        wal = home / "state.db-wal"
        assert wal.is_file() and wal.stat().st_size > 0
        files = [p for p in home.rglob("*") if p.is_file()]
        logs = [p for p in files if p.suffix == ".log" or "logs" in p.parts]
        assert logs, "the session wrote no script logs: the test would search too little"
        assert any(b"db booted" in p.read_bytes() for p in logs)
        found = {str(p): _secrets_in(p.read_bytes()) for p in files}
    finally:
        reader.close()
    assert {p: s for p, s in found.items() if s} == {}
    assert [s for s in SECRETS if any(s in out for out in run.outputs)] == []


@pytest.mark.parametrize("name", sorted(BAD_ENTRIES))
def test_each_bad_entry_shape_is_refused_by_the_catalog(tmp_path, name):
    """The same bad entries, one at a time (no cloud needed): exit 2, located, secret-free."""
    home = tmp_path / "home"
    home.mkdir()
    entry = BAD_ENTRIES[name].format(
        URL_USER=URL_USER, URL_PASS=URL_PASS, WRONG=WRONG, SK=SK, TOKEN=TOKEN, AK=AK, port=9
    )
    catalog = home / "clouds.yml"
    catalog.write_text("bad:\n" + _indent(entry, 2) + "\n")
    res = Cli(home, env=ENV)("clouds", expect=None)
    _assert_refused(res, catalog, _line_of(catalog, next(s for s in SECRETS if s in entry)))
    assert _secrets_in((res.out + res.err).encode()) == []


def test_launch_vm_refuses_a_url_with_keys_before_writing_anything(tmp_path):
    """`CLOUDINITD_IAAS_URL` with USER:PASSWORD@ must not reach the wrapper plan it writes."""
    home = tmp_path / "home"
    env = {
        "CLOUDINITD_IAAS_URL": f"http://{URL_USER}:{URL_PASS}@127.0.0.1:9/",
        "CLOUDINITD_IAAS_IMAGE": "ami-12345678",
    }
    res = Cli(home, env=env)("--dry-run", "--json", program="launch-vm", expect=2)
    assert res.err.startswith("cloudinitd: error: CLOUDINITD_IAAS_URL must not contain a user")
    assert len(res.err.splitlines()) == 1
    assert _secrets_in((res.out + res.err).encode()) == []
    for path in home.rglob("*") if home.exists() else []:
        if path.is_file():
            assert _secrets_in(path.read_bytes()) == [], path
