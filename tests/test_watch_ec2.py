"""`cloudinitd watch` as a user runs it, against the EC2 test cloud (moto in its own process).

- `watch --once` replaces an instance the cloud lost, and says so (exit 0; 1 while
  something stays broken; 2 for an unknown run);
- a watcher killed (SIGKILL) while the cloud holds its RunInstances answer, then
  started again: the launch is resumed with its own client token, nothing lost
  or duplicated;
- SIGTERM stops the loop cleanly (exit 0, a `watch stopped` event);
- a cloud that keeps failing is backed off and the replacement overflows to the next;
- instances of a run with a `lifetime` carry their own lease (shutdown = terminate
  and a shutdown scheduled by user data).
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.cli import BIN, Cli, write_plan
from tests.support.testcloud import ACCESS_KEY, SECRET_KEY, TestCloud

AK_ENV, SK_ENV = "WATCH_EC2_ACCESS_KEY", "WATCH_EC2_SECRET_KEY"


def _entry(cloud: TestCloud) -> str:
    return (f'{{provider: ec2, endpoint: "{cloud.endpoint}", region: us-east-1, '
            f"credentials: {{access_key_env: {AK_ENV}, secret_key_env: {SK_ENV}}}}}")


def plan_for(folder: Path, first: TestCloud, second: TestCloud | None = None,
             extra: str = "") -> Path:
    clouds = f"  a: {_entry(first)}\n" + (f"  b: {_entry(second)}\n" if second else "")
    placement = "clouds: [{cloud: a}, {cloud: b}]" if second else "cloud: a"
    return write_plan(folder, "name: kept\n" + extra + "clouds:\n" + clouds + f"""
defaults:
  image: ami-12345678
services:
  web:
    {placement}
    count: 3
    preserve: true
  batch:
    cloud: a
""")


@pytest.fixture
def wcli(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "home", env={AK_ENV: ACCESS_KEY, SK_ENV: SECRET_KEY})


def _live(cloud: TestCloud, run: str, service: str = "web") -> list[str]:
    out = []
    for inst in cloud.live_instances(run):
        tags = {t["Key"]: t["Value"] for t in inst.get("Tags", [])}
        if tags.get("cloudinitd:service") == service:
            out.append(inst["InstanceId"])
    return sorted(out)


def _web(cli: Cli, run: str, expect: int | None = 0) -> dict[int, str]:
    rows = cli("status", run, "--json", expect=expect).json()["services"]["web"]["instances"]
    assert len({r["index"] for r in rows}) == len(rows), rows
    return {r["index"]: r["instance_id"] for r in rows}


def test_watch_once_replaces_a_lost_instance_and_reports_it(tmp_path, ec2_cloud, wcli):
    cloud = ec2_cloud("a")
    plan = plan_for(tmp_path / "p", cloud)
    wcli("boot", plan, "--name", "w1", "--json")
    try:
        web = _web(wcli, "w1")
        cloud.client().terminate_instances(InstanceIds=[web[1]])
        res = wcli("watch", "w1", "--once", "--json")
        report = res.json()
        assert report["ok"] and report["state"] == "ok", report
        assert [(a["kind"], a["service"], a["index"]) for a in report["actions"]] == \
            [("replace", "web", 1)]
        now = _web(wcli, "w1")
        assert now[0] == web[0] and now[2] == web[2] and now[1] != web[1]
        assert _live(cloud, "w1") == sorted(now.values())
        history = wcli("history", "w1", "--json").json()
        assert any(e["kind"] == "replace" for e in history["events"]), history
        # batch does not preserve: its loss is reported, not repaired (exit 1).
        batch = wcli("status", "w1", "--json").json()["services"]["batch"]["instances"]
        cloud.client().terminate_instances(InstanceIds=[batch[0]["instance_id"]])
        res = wcli("watch", "w1", "--once", expect=1)
        assert "left" in res.out and "not preserved" in res.out, res.out
        assert _live(cloud, "w1", "batch") == []
    finally:
        wcli("terminate", "w1", "--json")
    assert cloud.live_instances("w1") == []
    res = wcli("watch", "nosuch", "--once", expect=2)
    assert res.err.count("\n") == 1 and "Traceback" not in res.err


class Watcher:
    """`cloudinitd watch RUN` in the background, killable by pid."""

    def __init__(self, cli: Cli, run: str, *args: str):
        self.proc = subprocess.Popen(
            [str(BIN / "cloudinitd"), "watch", run, *args], env=cli.env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, start_new_session=True)

    def until(self, what, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not what():
            assert self.proc.poll() is None, self.proc.communicate()
            assert time.monotonic() < deadline, "never happened"
            time.sleep(0.01)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)


def test_a_watcher_killed_mid_replacement_resumes_without_loss_or_duplicate(
        tmp_path, ec2_cloud, wcli):
    cloud = ec2_cloud("a")
    plan = plan_for(tmp_path / "p", cloud)
    wcli("boot", plan, "--name", "w2", "--json")
    watcher = None
    try:
        web = _web(wcli, "w2")
        cloud.client().terminate_instances(InstanceIds=[web[2]])
        calls = cloud.calls("RunInstances")
        cloud.slow("RunInstances", delay=5)  # the cloud acts, its answer is held back
        watcher = Watcher(wcli, "w2", "--interval", "1")
        watcher.until(lambda: cloud.calls("RunInstances") > calls)
        os.kill(watcher.proc.pid, signal.SIGKILL)
        watcher.proc.wait(timeout=30)
        made = [i for i in _live(cloud, "w2") if i not in web.values()]
        assert len(made) == 1, "the cloud made the replacement the store never heard of"
        report = wcli("watch", "w2", "--once", "--json").json()
        assert report["ok"], report
        assert "resume" in [a["kind"] for a in report["actions"]], report
        now = _web(wcli, "w2")
        assert sorted(now) == [0, 1, 2] and now[2] == made[0]
        assert _live(cloud, "w2") == sorted(now.values())
    finally:
        if watcher:
            watcher.stop()
        wcli("terminate", "w2", "--json")
    assert cloud.live_instances("w2") == []


def test_sigterm_stops_the_loop_cleanly(tmp_path, ec2_cloud, wcli):
    cloud = ec2_cloud("a")
    wcli("boot", plan_for(tmp_path / "p", cloud), "--name", "w3", "--json")
    watcher = Watcher(wcli, "w3", "--interval", "0.5", "--json")
    try:
        assert watcher.proc.stdout is not None
        first = watcher.proc.stdout.readline()  # one JSON object per check
        assert '"state": "ok"' in first, first
        watcher.proc.send_signal(signal.SIGTERM)
        assert watcher.proc.wait(timeout=60) == 0
        events = wcli("history", "w3", "--json").json()["events"]
        assert [e["message"] for e in events if e["kind"] == "watch"][-1] == "stopped"
    finally:
        watcher.stop()
        wcli("terminate", "w3", "--json")


def test_a_failing_cloud_is_backed_off_and_the_replacement_overflows(tmp_path, ec2_cloud,
                                                                    wcli):
    first, second = ec2_cloud("a"), ec2_cloud("b")
    plan = plan_for(tmp_path / "p", first, second)
    wcli("boot", plan, "--name", "w4", "--json")
    try:
        web = _web(wcli, "w4")
        assert len(_live(first, "w4")) == 3
        first.client().terminate_instances(InstanceIds=[web[0]])
        first.arm(code="InternalError", count=20)
        res = wcli("watch", "w4", "--once", "--json", expect=1)
        assert any(a["kind"] == "launch-failed" for a in res.json()["actions"]), res.out
        report = wcli("watch", "w4", "--once", "--json").json()
        assert any(a["kind"] == "backoff" for a in report["actions"]), report
        assert len(_live(first, "w4")) == 2 and len(_live(second, "w4")) == 1
        assert sorted(_web(wcli, "w4")) == [0, 1, 2]
    finally:
        first.reset()
        wcli("terminate", "w4", "--json")
    assert first.live_instances("w4") == [] and second.live_instances("w4") == []


def test_instances_of_a_run_with_a_lifetime_carry_their_own_lease(tmp_path, ec2_cloud, wcli):
    cloud = ec2_cloud("a")
    wcli("boot", plan_for(tmp_path / "p", cloud, extra="lifetime: 2h\n"), "--name", "w5",
         "--json")
    try:
        created = wcli("status", "w5", "--json").json()
        ec2 = cloud.client()
        for iid in _live(cloud, "w5"):
            behaviour = ec2.describe_instance_attribute(
                InstanceId=iid, Attribute="instanceInitiatedShutdownBehavior")
            assert behaviour["InstanceInitiatedShutdownBehavior"]["Value"] == "terminate"
            data = ec2.describe_instance_attribute(InstanceId=iid, Attribute="userData")
            script = base64.b64decode(data["UserData"]["Value"]).decode()
            assert script.startswith("#!/bin/sh") and "shutdown -h" in script, script
        assert created["run"] == "w5"
    finally:
        wcli("terminate", "w5", "--json")


def test_sigterm_mid_replacement_waits_for_the_launch_then_stops(tmp_path, ec2_cloud, wcli):
    """SIGTERM while the cloud holds the RunInstances answer: no new launch starts, the
    one under way is answered and recorded, exit 0; the next check has nothing to
    resume and finds exactly the planned instances."""
    cloud = ec2_cloud("a")
    wcli("boot", plan_for(tmp_path / "p", cloud), "--name", "w6", "--json")
    watcher = None
    try:
        web = _web(wcli, "w6")
        cloud.client().terminate_instances(InstanceIds=[web[0]])
        calls = cloud.calls("RunInstances")
        cloud.slow("RunInstances", delay=3)
        watcher = Watcher(wcli, "w6", "--interval", "1")
        watcher.until(lambda: cloud.calls("RunInstances") > calls)
        watcher.proc.send_signal(signal.SIGTERM)
        out, err = watcher.proc.communicate(timeout=120)
        assert watcher.proc.returncode == 0, out + err
        assert "stopped during a check" in err and "Traceback" not in err, err
        recorded = _web(wcli, "w6", expect=1)  # the run is `interrupted` until the next check
        assert sorted(recorded) == [0, 1, 2], "the launch under way was recorded"
        report = wcli("watch", "w6", "--once", "--json").json()
        assert report["ok"] and "resume" not in [a["kind"] for a in report["actions"]], report
        assert _live(cloud, "w6") == sorted(_web(wcli, "w6").values())
    finally:
        if watcher:
            watcher.stop()
        wcli("terminate", "w6", "--json")
    assert cloud.live_instances("w6") == []
