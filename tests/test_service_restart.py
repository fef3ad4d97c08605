"""`cloudinitd serve` stopped (SIGTERM, SIGKILL) in the middle of replacing an instance,
then started again: the group resumes, no instance is lost or duplicated.

The replacement's RunInstances answer is held back by the test cloud, so the
stop lands after the cloud made the instance and before the server heard of
it; only the launch intent (with its client token) is in the store.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.support.cli import Cli
from tests.support.serve import Serve, add_user, in_service, wait_for
from tests.support.testcloud import ACCESS_KEY, SECRET_KEY
from tests.test_service_ec2 import AK_ENV, AMI, SK_ENV, write_catalog


def _serve_group(tmp_path: Path, ec2_cloud, name: str, size: int):
    """A serve process with user alice's group `name` of `size` instances in service."""
    cloud = ec2_cloud("k")
    cli = Cli(tmp_path / "home", env={AK_ENV: ACCESS_KEY, SK_ENV: SECRET_KEY})
    write_catalog(cli.home, k=cloud)
    alice = add_user(cli, "alice")
    server = Serve(cli).start()
    try:
        client = server.client(alice)
        client.create_launch_configuration(LaunchConfigurationName="lc@k", ImageId=AMI,
                                           InstanceType="m1.small")
        client.create_auto_scaling_group(AutoScalingGroupName=name, LaunchConfigurationName="lc@k",
                                         MinSize=size, MaxSize=size)
        wait_for(lambda: len(in_service(client, name)) == size, why=f"{size} in service")
    except BaseException:
        server.stop(signal.SIGKILL)
        raise
    return cloud, cli, alice, server


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_stop_mid_replacement_then_restart_resumes_without_duplicates(tmp_path: Path, ec2_cloud,
                                                                      sig):
    cloud, cli, alice, server = _serve_group(tmp_path, ec2_cloud, "r", 3)
    try:
        client = server.client(alice)
        victim = sorted(i["InstanceId"] for i in in_service(client, "r"))[0]
        launches = cloud.calls("RunInstances")
        cloud.slow("RunInstances", delay=8)
        cloud.client().terminate_instances(InstanceIds=[victim])
        wait_for(lambda: cloud.calls("RunInstances") > launches, timeout=60,
                 why="the replacement's RunInstances call")
        time.sleep(0.5)  # inside the held-back answer: the cloud made it, serve does not know
        code = server.stop(sig)
        assert code == (0 if sig == signal.SIGTERM else -signal.SIGKILL), server.log_text()
        assert len(cloud.live_instances("alice.r")) == 3  # 2 old + the unanswered one
    finally:
        server.stop(signal.SIGKILL)

    again = Serve(cli).start()
    try:
        client = again.client(alice)
        wait_for(lambda: len(in_service(client, "r")) == 3, why="3 in service after restart")
        # Settled: a few more passes change nothing.
        time.sleep(3 * again.interval)
        ids = {i["InstanceId"] for i in in_service(client, "r")}
        assert victim not in ids and len(ids) == 3
        on_cloud = {i["InstanceId"] for i in cloud.live_instances("alice.r")}
        assert on_cloud == ids  # nothing lost, nothing duplicated
        status = cli("status", "alice.r", "--json").json()
        rows = [i for i in status["services"]["vm"]["instances"] if i["state"] == "running"]
        assert sorted(Counter(i["index"] for i in rows).values()) == [1, 1, 1]
        events = [e["kind"] for e in cli("history", "alice.r", "--json").json()["events"]]
        if sig == signal.SIGKILL:
            assert "resume" in events  # the unanswered launch, re-issued with its own token
    finally:
        again.stop()


@pytest.mark.slow
def test_sigkill_during_delete_then_restart_finishes_the_deletion(tmp_path: Path, ec2_cloud):
    cloud, cli, alice, server = _serve_group(tmp_path, ec2_cloud, "d", 2)
    try:
        client = server.client(alice)
        terminations = cloud.calls("TerminateInstances")
        cloud.slow("TerminateInstances", delay=8)
        client.delete_auto_scaling_group(AutoScalingGroupName="d", ForceDelete=True)
        wait_for(lambda: cloud.calls("TerminateInstances") > terminations, timeout=60,
                 why="the deletion's TerminateInstances call")
        assert server.stop(signal.SIGKILL) == -signal.SIGKILL
    finally:
        server.stop(signal.SIGKILL)
    again = Serve(cli).start()
    try:
        client = again.client(alice)
        wait_for(lambda: client.describe_auto_scaling_groups()["AutoScalingGroups"] == [],
                 why="the deletion finished after the restart")
        assert cloud.live_instances("alice.d") == []
        assert cli("status", "alice.d", "--json", expect=None).json()["status"] == "terminated"
    finally:
        again.stop()
