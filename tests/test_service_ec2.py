"""`cloudinitd serve` end to end: boto3's own autoscaling client against the real server
process on loopback, backed by EC2 test clouds (moto server processes).

The groups here have no scripts, so nothing waits for SSH or touches the
addresses moto invents.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import signal
import stat
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from unittest import mock

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests.support.cli import Cli
from tests.support.serve import (
    Serve,
    add_user,
    create_phantom_group,
    group,
    in_service,
    no_secret_anywhere,
    wait_for,
)
from tests.support.testcloud import ACCESS_KEY, SECRET_KEY, TestCloud

AK_ENV, SK_ENV = "E2E_EC2_ACCESS_KEY", "E2E_EC2_SECRET_KEY"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
AMI = "ami-12345678"


def write_catalog(home: Path, **clouds: TestCloud) -> None:
    home.mkdir(parents=True, exist_ok=True)
    lines = [f'{name}: {{provider: ec2, endpoint: "{c.endpoint}", region: us-east-1,'
             f" credentials: {{access_key_env: {AK_ENV}, secret_key_env: {SK_ENV}}}}}"
             for name, c in clouds.items()]
    (home / "clouds.yml").write_text("\n".join(lines) + "\n")


@pytest.fixture
def served(tmp_path: Path, ec2_cloud):
    """(serve, alice's client, bob's client, {name: cloud}) with clouds a and b."""
    clouds = {"a": ec2_cloud("a"), "b": ec2_cloud("b")}
    cli = Cli(tmp_path / "home", env={AK_ENV: ACCESS_KEY, SK_ENV: SECRET_KEY})
    write_catalog(cli.home, **clouds)
    alice, bob = add_user(cli, "alice"), add_user(cli, "bob")
    server = Serve(cli).start()
    try:
        yield server, server.client(alice), server.client(bob), clouds, (alice, bob)
    finally:
        server.stop()


def live(clouds: dict[str, TestCloud], run: str) -> list[int]:
    return [len(clouds[name].live_instances(run)) for name in ("a", "b")]


def launch_configs(client, name: str = "lc", clouds: tuple[str, ...] = ("a", "b")) -> None:
    for cloud in clouds:
        client.create_launch_configuration(LaunchConfigurationName=f"{name}@{cloud}",
                                           ImageId=AMI, InstanceType="m1.small",
                                           UserData="#!/bin/sh\necho hello\n")


def error_of(call, *args, **kwargs) -> tuple[str, int]:
    with pytest.raises(ClientError) as err:
        call(*args, **kwargs)
    return (err.value.response["Error"]["Code"],
            err.value.response["ResponseMetadata"]["HTTPStatusCode"])


def test_phantom_group_3_plus_2_shrinks_last_cloud_first_and_is_a_run(served):
    server, alice, _, clouds, users = served
    clouds["a"].set_quota(3)
    launch_configs(alice)
    described = alice.describe_launch_configurations()["LaunchConfigurations"]
    assert [lc["LaunchConfigurationName"] for lc in described] == ["lc@a", "lc@b"]
    create_phantom_group(alice, "web", "lc", "a:3,b:-1", 5)
    wait_for(lambda: len(in_service(alice, "web")) == 5, why="5 instances in service")
    assert live(clouds, "alice.web") == [3, 2]
    g = group(alice, "web")
    assert (g["DesiredCapacity"], g["AvailabilityZones"]) == (5, ["a", "b"])
    zones = sorted(i["AvailabilityZone"] for i in g["Instances"])
    assert zones == ["a", "a", "a", "b", "b"]
    ids = {i["InstanceId"] for i in g["Instances"]}
    assert ids == {i["InstanceId"] for c in clouds.values()
                   for i in c.live_instances("alice.web")}
    # The group is a run of the store: status and history see it.
    status = server.cli("status", "alice.web", "--json").json()
    assert len(status["services"]["vm"]["instances"]) == 5

    alice.set_desired_capacity(AutoScalingGroupName="web", DesiredCapacity=2)
    wait_for(lambda: live(clouds, "alice.web") == [2, 0], why="2 left, b emptied first")
    wait_for(lambda: len(in_service(alice, "web")) == 2, why="group shows 2")

    alice.delete_auto_scaling_group(AutoScalingGroupName="web", ForceDelete=True)
    wait_for(lambda: group(alice, "web") is None, why="group gone")
    assert live(clouds, "alice.web") == [0, 0]
    history = server.cli("history", "alice.web", "--json").json()
    assert history  # the run stays in the record, terminated
    no_secret_anywhere(server.cli.home, server.log_text(), SECRET_KEY,
                       *(u["secret_key"] for u in users), allowed=("users.json",))


def test_a_capacity_error_on_the_first_cloud_spills_to_the_next(served):
    _, alice, _, clouds, _ = served
    clouds["a"].arm("InsufficientInstanceCapacity", count=3)  # every botocore attempt
    launch_configs(alice)
    create_phantom_group(alice, "spill", "lc", "a:-1,b:-1", 3)
    wait_for(lambda: len(in_service(alice, "spill")) == 3, why="3 in service")
    assert live(clouds, "alice.spill") == [0, 3]


def test_a_dead_instance_is_replaced_and_never_duplicated(served):
    _, alice, _, clouds, _ = served
    launch_configs(alice, clouds=("a",))
    alice.create_auto_scaling_group(AutoScalingGroupName="keep", LaunchConfigurationName="lc@a",
                                    MinSize=2, MaxSize=4, DesiredCapacity=2)
    wait_for(lambda: len(in_service(alice, "keep")) == 2, why="2 in service")
    victim = sorted(i["InstanceId"] for i in in_service(alice, "keep"))[0]
    clouds["a"].client().terminate_instances(InstanceIds=[victim])
    def replaced() -> bool:
        ids = {i["InstanceId"] for i in in_service(alice, "keep")}
        return len(ids) == 2 and victim not in ids

    wait_for(replaced, why="the dead instance replaced")
    assert len(clouds["a"].live_instances("alice.keep")) == 2
    # Plain AWS groups keep MinSize <= desired <= MaxSize.
    assert error_of(alice.set_desired_capacity, AutoScalingGroupName="keep",
                    DesiredCapacity=5) == ("ValidationError", 400)
    alice.delete_auto_scaling_group(AutoScalingGroupName="keep")
    wait_for(lambda: group(alice, "keep") is None, why="group gone")
    assert clouds["a"].live_instances("alice.keep") == []


def test_users_see_and_change_only_their_own(served):
    _, alice, bob, clouds, _ = served
    launch_configs(alice, clouds=("a",))
    alice.create_auto_scaling_group(AutoScalingGroupName="mine", LaunchConfigurationName="lc@a",
                                    MinSize=1, MaxSize=1)
    wait_for(lambda: len(in_service(alice, "mine")) == 1, why="alice's group runs")
    assert bob.describe_auto_scaling_groups()["AutoScalingGroups"] == []
    assert bob.describe_launch_configurations()["LaunchConfigurations"] == []
    assert error_of(bob.set_desired_capacity, AutoScalingGroupName="mine",
                    DesiredCapacity=0) == ("ValidationError", 400)
    assert error_of(bob.delete_auto_scaling_group,
                    AutoScalingGroupName="mine") == ("ValidationError", 400)
    # bob cannot build on alice's launch configuration either.
    assert error_of(bob.create_auto_scaling_group, AutoScalingGroupName="x",
                    LaunchConfigurationName="lc@a", MinSize=1, MaxSize=1)[0] == "ValidationError"
    # bob may use the same names for his own.
    launch_configs(bob, clouds=("a",))
    bob.create_auto_scaling_group(AutoScalingGroupName="mine", LaunchConfigurationName="lc@a",
                                  MinSize=0, MaxSize=1)
    assert len(in_service(alice, "mine")) == 1
    assert group(bob, "mine")["DesiredCapacity"] == 0
    for client in (alice, bob):
        client.delete_auto_scaling_group(AutoScalingGroupName="mine")
    wait_for(lambda: clouds["a"].live_instances("alice.mine") == [], why="alice's gone")


def test_wrong_secret_unknown_key_and_stale_date(served):
    server, _, _, _, (alice, _) = served
    wrong = server.client({"access_key": alice["access_key"], "secret_key": "x" * 40})
    assert error_of(wrong.describe_auto_scaling_groups) == ("SignatureDoesNotMatch", 403)
    unknown = server.client({"access_key": "AKCIUNKNOWN000000000", "secret_key": "x" * 40})
    assert error_of(unknown.describe_auto_scaling_groups) == ("InvalidClientTokenId", 403)
    # A request signed correctly 20 minutes ago (boto3 always signs with now).
    stale = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=20)
    status, body = raw_request(server, alice, b"Action=DescribeAutoScalingGroups"
                               b"&Version=2011-01-01", when=stale)
    assert status == 400 and b"<Code>RequestExpired</Code>" in body
    status, body = raw_request(server, alice, b"Action=DescribeAutoScalingGroups"
                               b"&Version=2011-01-01")
    assert status == 200
    status, body = raw_request(server, None, b"Action=DescribeAutoScalingGroups")
    assert status == 403 and b"MissingAuthenticationToken" in body
    assert alice["secret_key"].encode() not in body
    assert alice["secret_key"] not in server.log_text()


def raw_request(server: Serve, user: dict | None, body: bytes,
                when: datetime.datetime | None = None) -> tuple[int, bytes]:
    """POST a form to the server, signed as botocore signs (at `when`), or unsigned."""
    request = AWSRequest(method="POST", url=server.url + "/", data=body, headers={
        "Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    if user:
        at = when or datetime.datetime.now(datetime.UTC)
        with mock.patch("botocore.auth.get_current_datetime", return_value=at):
            SigV4Auth(Credentials(user["access_key"], user["secret_key"]), "autoscaling",
                      "us-east-1").add_auth(request)
    prepared = request.prepare()
    req = urllib.request.Request(prepared.url, data=body, method="POST",
                                 headers=dict(prepared.headers.items()))
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=30) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_bad_requests_get_aws_errors_and_nothing_starts(served):
    server, alice, _, clouds, (user, _) = served
    cases = [
        (alice.create_launch_configuration, dict(LaunchConfigurationName="no-cloud",
                                                 ImageId=AMI, InstanceType="m1.small")),
        (alice.create_launch_configuration, dict(LaunchConfigurationName="lc@nowhere",
                                                 ImageId=AMI, InstanceType="m1.small")),
        (alice.create_launch_configuration, dict(LaunchConfigurationName="../x@a",
                                                 ImageId=AMI, InstanceType="m1.small")),
        (alice.create_auto_scaling_group, dict(AutoScalingGroupName="../../etc",
                                               LaunchConfigurationName="lc@a", MinSize=1,
                                               MaxSize=1)),
        (alice.create_auto_scaling_group, dict(AutoScalingGroupName="big",
                                               LaunchConfigurationName="lc@a", MinSize=1,
                                               MaxSize=10 ** 9)),
        (alice.create_auto_scaling_group, dict(AutoScalingGroupName="ghost",
                                               LaunchConfigurationName="none@a", MinSize=1,
                                               MaxSize=1)),
        (alice.set_desired_capacity, dict(AutoScalingGroupName="ghost", DesiredCapacity=1)),
    ]
    launch_configs(alice, clouds=("a",))
    for call, kwargs in cases:
        assert error_of(call, **kwargs) == ("ValidationError", 400), kwargs
    assert error_of(alice.create_launch_configuration, LaunchConfigurationName="lc@a",
                    ImageId=AMI, InstanceType="m1.small") == ("AlreadyExists", 400)
    bad_tags = [{"Key": "PHANTOM_DEFINITION", "Value": "error_overflow_n_preserving"},
                {"Key": "clouds", "Value": "a:three"}, {"Key": "n_preserve", "Value": "1"}]
    assert error_of(alice.create_auto_scaling_group, AutoScalingGroupName="t",
                    LaunchConfigurationName="lc", MinSize=1, MaxSize=1,
                    Tags=bad_tags) == ("ValidationError", 400)
    status, body = raw_request(server, user, b"Action=TerminateEverything&Version=2011-01-01")
    assert status == 400 and b"<Code>InvalidAction</Code>" in body
    status, body = raw_request(server, user, b"Action=DescribeAutoScalingGroups&Version=1999")
    assert status == 400 and b"<Code>NoSuchVersion</Code>" in body
    status, body = raw_request(server, user, b"x=" + b"a" * (70 * 1024))
    assert status == 413
    assert alice.describe_auto_scaling_groups()["AutoScalingGroups"] == []
    assert clouds["a"].calls("RunInstances") == 0
    assert "Traceback" not in server.log_text()


def test_launch_configuration_in_use_and_files_private(served):
    server, alice, _, _, _ = served
    launch_configs(alice, clouds=("a",))
    alice.create_auto_scaling_group(AutoScalingGroupName="g", LaunchConfigurationName="lc@a",
                                    MinSize=0, MaxSize=1)
    assert error_of(alice.delete_launch_configuration,
                    LaunchConfigurationName="lc@a") == ("ResourceInUse", 400)
    alice.delete_auto_scaling_group(AutoScalingGroupName="g")
    wait_for(lambda: group(alice, "g") is None, why="group gone")
    alice.delete_launch_configuration(LaunchConfigurationName="lc@a")
    assert alice.describe_launch_configurations()["LaunchConfigurations"] == []
    home = server.cli.home
    for name in ("users.json", "service.db", "state.db"):
        assert stat.S_IMODE(os.stat(home / name).st_mode) == 0o600, name


def test_serve_stops_cleanly_on_sigterm(tmp_path: Path):
    cli = Cli(tmp_path / "home")
    server = Serve(cli).start()
    assert server.stop(signal.SIGTERM) == 0
    assert "stopped" in server.log_text()


def test_user_commands(tmp_path: Path):
    cli = Cli(tmp_path / "home")
    made = cli("user", "add", "carol", "--json").json()
    assert set(made) == {"name", "access_key", "secret_key"}
    assert stat.S_IMODE(os.stat(cli.home / "users.json").st_mode) == 0o600
    listed = cli("user", "list", "--json")
    assert [u["access_key"] for u in listed.json()["users"]] == [made["access_key"]]
    assert made["secret_key"] not in listed.out + listed.err
    assert made["secret_key"] not in cli("user", "list").out
    again = cli("user", "add", "carol", expect=2)
    assert "already exists" in again.err and len(again.err.strip().splitlines()) == 1
    bad = cli("user", "add", "Bad Name/..", expect=2)
    assert "Traceback" not in bad.err and len(bad.err.strip().splitlines()) == 1
    cli("user", "remove", "carol")
    assert cli("user", "list", "--json").json()["users"] == []
    assert "no user" in cli("user", "remove", "carol", expect=2).err
    assert json.loads((cli.home / "users.json").read_text())["users"] == []


@pytest.mark.parametrize("listen", ["nothere", "localhost:8445", "127.0.0.1:99999"])
def test_serve_refuses_a_bad_listen_address_in_one_line(tmp_path: Path, listen: str):
    res = Cli(tmp_path / "home")("serve", "--listen", listen, expect=2, timeout=60)
    assert len(res.err.strip().splitlines()) == 1 and "Traceback" not in res.err


def test_the_aws_cli_drives_it(served):
    """The README's AWS CLI lines, as written (the system's `aws`, from install-system-deps)."""
    server, alice, _, clouds, (user, _) = served
    aws = shutil.which("aws", path=SYSTEM_PATH)
    assert aws, "the AWS CLI is missing: run scripts/install-system-deps.sh"
    home = server.cli.home.parent / "aws"
    home.mkdir()
    env = {"PATH": SYSTEM_PATH, "HOME": str(home), "AWS_ACCESS_KEY_ID": user["access_key"],
           "AWS_SECRET_ACCESS_KEY": user["secret_key"], "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_PAGER": "", "AWS_EC2_METADATA_DISABLED": "true",
           "AWS_CONFIG_FILE": str(home / "config"),
           "AWS_SHARED_CREDENTIALS_FILE": str(home / "credentials")}

    def asg(*args: str, expect: int = 0, **extra: str) -> str:
        res = subprocess.run([aws, "autoscaling", *args, "--endpoint-url", server.url,
                              "--output", "json"], capture_output=True, text=True,
                             env={**env, **extra}, timeout=120)
        assert res.returncode == expect, res.stderr
        return res.stdout if expect == 0 else res.stderr

    asg("create-launch-configuration", "--launch-configuration-name", "web@a",
        "--image-id", AMI, "--instance-type", "m1.small", "--user-data", "#!/bin/sh\necho hi\n")
    described = json.loads(asg("describe-launch-configurations"))["LaunchConfigurations"]
    assert [lc["LaunchConfigurationName"] for lc in described] == ["web@a"]
    asg("create-auto-scaling-group", "--auto-scaling-group-name", "web",
        "--launch-configuration-name", "web@a", "--min-size", "1", "--max-size", "5",
        "--desired-capacity", "3")
    wait_for(lambda: len(in_service(alice, "web")) == 3, why="3 in service")
    shown = json.loads(asg("describe-auto-scaling-groups", "--auto-scaling-group-names", "web"))
    assert len(shown["AutoScalingGroups"][0]["Instances"]) == 3
    asg("set-desired-capacity", "--auto-scaling-group-name", "web", "--desired-capacity", "1")
    wait_for(lambda: len(clouds["a"].live_instances("alice.web")) == 1, why="1 left")
    asg("delete-auto-scaling-group", "--auto-scaling-group-name", "web", "--force-delete")
    wait_for(lambda: group(alice, "web") is None, why="group gone")
    assert clouds["a"].live_instances("alice.web") == []
    err = asg("describe-auto-scaling-groups", expect=254, AWS_SECRET_ACCESS_KEY="x" * 40)
    assert "SignatureDoesNotMatch" in err and user["secret_key"] not in err
