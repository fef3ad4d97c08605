"""The `cloudinitd` command end to end on EC2 test clouds (moto server processes).

Instances in these tests have no scripts, so nothing waits for SSH or
touches moto's invented addresses, except in the last test, where every
instance is backed by a real loopback sshd (the test cloud reports that
host's address instead of moto's).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.cli import BIN, Cli, write_plan
from tests.support.testcloud import ACCESS_KEY, SECRET_KEY, TestCloud

AK_ENV, SK_ENV = "E2E_EC2_ACCESS_KEY", "E2E_EC2_SECRET_KEY"


@pytest.fixture
def ec2cli(tmp_path: Path) -> Cli:
    """A Cli whose environment holds the test clouds' keys (the plan names only the variables)."""
    return Cli(tmp_path / "home", env={AK_ENV: ACCESS_KEY, SK_ENV: SECRET_KEY})


def cloud_entry(cloud: TestCloud) -> str:
    return (
        f'{{provider: ec2, endpoint: "{cloud.endpoint}", region: us-east-1, '
        f"credentials: {{access_key_env: {AK_ENV}, secret_key_env: {SK_ENV}}}}}"
    )


def crash_plan(folder: Path, cloud: TestCloud) -> Path:
    """Ten instances in two services on one cloud: enough launches for a kill to land among."""
    return write_plan(folder, f"""
        name: crash
        clouds:
          k: {cloud_entry(cloud)}
        defaults:
          cloud: k
          image: ami-12345678
        services:
          web:
            count: 7
          db:
            count: 3
        """)


def overflow_plan(folder: Path, a: TestCloud, b: TestCloud, count: int, max_a: int = -1) -> Path:
    text = f"""
        name: overflow
        clouds:
          a: {cloud_entry(a)}
          b: {cloud_entry(b)}
        defaults:
          image: ami-12345678
          size: small
        services:
          web:
            count: {count}
            clouds: [{{cloud: a, max: {max_a}}}, {{cloud: b, max: -1}}]
    """
    return write_plan(folder, text)


def counts(run: str, *clouds: TestCloud) -> list[int]:
    return [len(c.live_instances(run)) for c in clouds]


def assert_no_secret(home: Path, *texts: str) -> None:
    for text in texts:
        assert SECRET_KEY not in text
    for path in home.rglob("*"):
        if path.is_file():
            assert SECRET_KEY.encode() not in path.read_bytes(), path


def test_overflow_quota_spills_3_plus_2(tmp_path, ec2_cloud, ec2cli):
    a, b = ec2_cloud("a", quota=3), ec2_cloud("b")
    plan = overflow_plan(tmp_path / "p", a, b, count=5)
    res = ec2cli("boot", plan, "--name", "ovf", "--json")
    assert res.json()["ok"] is True
    assert counts("ovf", a, b) == [3, 2]
    # One call each: a launched the 3 that fit (MinCount 1, MaxCount 5), b the rest.
    assert a.calls("RunInstances") == 1 and b.calls("RunInstances") == 1
    status = ec2cli("status", "ovf", "--json")
    assert_no_secret(ec2cli.home, res.out, res.err, status.out, status.err)
    ec2cli("terminate", "ovf", "--json")
    assert counts("ovf", a, b) == [0, 0]
    assert_no_secret(ec2cli.home)


def test_armed_fault_sends_everything_to_next_cloud(tmp_path, ec2_cloud, ec2cli):
    a, b = ec2_cloud("a"), ec2_cloud("b")
    a.arm("InsufficientInstanceCapacity", count=3)  # as many as botocore's attempts
    plan = overflow_plan(tmp_path / "p", a, b, count=5)
    assert ec2cli("boot", plan, "--name", "flt", "--json").json()["ok"] is True
    assert counts("flt", a, b) == [0, 5]
    ec2cli("terminate", "flt", "--json")
    assert counts("flt", a, b) == [0, 0]


def test_max_then_scale_to_7_then_2(tmp_path, ec2_cloud, ec2cli):
    a, b = ec2_cloud("a"), ec2_cloud("b")
    plan = overflow_plan(tmp_path / "p", a, b, count=5, max_a=3)
    ec2cli("boot", plan, "--name", "sc", "--json")
    assert counts("sc", a, b) == [3, 2]
    ec2cli("scale", "sc", "web", "7", "--json")
    assert counts("sc", a, b) == [3, 4]
    ec2cli("scale", "sc", "web", "2", "--json")
    assert counts("sc", a, b) == [2, 0]  # removed from the last cloud first
    ec2cli("terminate", "sc", "--json")
    assert counts("sc", a, b) == [0, 0]


def test_scale_past_the_instance_limits_is_refused_before_any_launch(tmp_path, ec2_cloud, ec2cli):
    """The plan's per-service / per-run limits bind `scale` too (README: Limits)."""
    a, b = ec2_cloud("a"), ec2_cloud("b")
    plan = overflow_plan(tmp_path / "p", a, b, count=1)
    ec2cli("boot", plan, "--name", "lim", "--json")
    calls = a.calls("RunInstances") + b.calls("RunInstances")
    for args in (("1000000000",), ("1001",), ("4", "--max-instances", "3")):
        res = ec2cli("scale", "lim", "web", *args, expect=2)
        assert "over the limit" in res.err and "Traceback" not in res.err
        assert len(res.err.strip().splitlines()) == 1
    assert a.calls("RunInstances") + b.calls("RunInstances") == calls
    assert counts("lim", a, b) == [1, 0]
    ec2cli("scale", "lim", "web", "3", "--max-instances", "3", "--json")
    assert counts("lim", a, b) == [3, 0]
    ec2cli("terminate", "lim", "--json")
    assert counts("lim", a, b) == [0, 0]


def test_everything_full_fails_with_exit_1(tmp_path, ec2_cloud, ec2cli):
    a, b = ec2_cloud("a", quota=1), ec2_cloud("b", quota=1)
    plan = overflow_plan(tmp_path / "p", a, b, count=5)
    res = ec2cli("boot", plan, "--name", "full", "--json", expect=1)
    assert res.json()["ok"] is False
    ec2cli("terminate", "full", "--json")
    assert counts("full", a, b) == [0, 0]


# Where the boot is killed: the answer of this call is held back, the process
# is SIGKILLed while it waits, then `cloudinitd terminate` must find everything.
KILL_POINTS = [
    ("RunInstances", "instances exist, the store has only the launch intent"),
    ("CreateTags", "ids recorded, index tags not all written"),
    ("DescribeInstances", "waiting for the instances to run"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("action", "why"), KILL_POINTS, ids=[p[0] for p in KILL_POINTS])
def test_sigkill_during_boot_then_terminate_leaves_nothing(
    tmp_path, ec2_cloud, ec2cli, action, why
):
    cloud = ec2_cloud("k")
    plan = crash_plan(tmp_path / "p", cloud)
    cloud.client().describe_regions()  # warm moto so the kill lands in the held-back answer
    cloud.slow(action, delay=8)
    run = f"crash-{action.lower()}"
    proc = subprocess.Popen(
        [str(BIN / "cloudinitd"), "boot", str(plan), "--name", run, "--json"],
        env=ec2cli.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while cloud.calls(action) < 1:
            assert proc.poll() is None, f"boot exited {proc.returncode} before {action}"
            assert time.monotonic() < deadline, f"no {action} call seen"
            time.sleep(0.05)
        time.sleep(0.5)  # inside the held-back answer
        assert proc.poll() is None
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    if action == "RunInstances":
        assert len(cloud.live_instances(run)) >= 1, why  # launched, never recorded
    res = ec2cli("terminate", run, "--json", expect=None)
    assert res.code == 0, res.err
    assert cloud.live_instances(run) == [], why


@pytest.mark.slow
def test_backed_instances_run_scripts_over_ssh(tmp_path, ec2_cloud, ec2cli, sshd_hosts):
    """Each instance is a real loopback sshd: boot scripts run and see each other's addresses."""
    db_host, web_host = sshd_hosts(2)
    a, b = ec2_cloud("a"), ec2_cloud("b")
    a.set_pool([db_host.address])
    b.set_pool([web_host.address])
    out = tmp_path / "out"
    out.mkdir()
    text = f"""
        name: backed
        vars:
          out: {out}
        clouds:
          a: {cloud_entry(a)}
          b: {cloud_entry(b)}
        defaults:
          image: ami-12345678
          ssh_key: {db_host.key_path}
        services:
          db:
            cloud: a
            ssh_port: {db_host.port}
            boot: db.sh.j2
            exports: [secret_word]
          web:
            cloud: b
            ssh_port: {web_host.port}
            boot: web.sh.j2
    """
    scripts = {
        "db.sh.j2": """
            set -e
            echo {{ self.address }} > {{ vars.out }}/db-address
            echo "secret_word=swordfish" > "$CLOUDINITD_EXPORT"
            """,
        "web.sh.j2": """
            set -e
            echo {{ db.address }} {{ db.secret_word }} {{ self.address }} > {{ vars.out }}/web-saw
            """,
    }
    plan = write_plan(tmp_path / "p", text, scripts)
    assert ec2cli("boot", plan, "--name", "bk", "--json").json()["ok"] is True
    assert (out / "db-address").read_text().split() == [db_host.address]
    assert (out / "web-saw").read_text().split() == [
        db_host.address,
        "swordfish",
        web_host.address,
    ]
    ec2cli("terminate", "bk", "--json")
    assert counts("bk", a, b) == [0, 0]
    assert a.stats()["pool"] == [db_host.address]  # the host went back to the pool


def test_inline_cloud_secret_refused_before_anything_is_stored(tmp_path, ec2cli):
    """A plan that pastes a secret into an inline cloud: exit 2 with file:line, nothing stored."""
    pasted = "wJalrXUtnFEMI/K7MDENG+pasted"
    text = f"""
        name: leaky
        clouds:
          a:
            provider: ec2
            endpoint: http://127.0.0.1:9
            credentials:
              access_key_env: {AK_ENV}
              secret_key: "{pasted}"
        defaults:
          image: ami-12345678
        services:
          web:
            cloud: a
    """
    plan = write_plan(tmp_path / "p", text)
    res = ec2cli("validate", plan, expect=2)
    assert f"{plan}:8:" in res.err and pasted not in res.err
    res = ec2cli("boot", plan, "--name", "leaky", expect=2)
    assert pasted not in res.out + res.err
    for path in ec2cli.home.rglob("*") if ec2cli.home.exists() else []:
        if path.is_file():
            assert pasted.encode() not in path.read_bytes(), path
