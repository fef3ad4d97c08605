"""The EC2 test cloud itself: a moto server process behind the quota/fault/backing middleware.

Instances here keep moto's invented addresses unless backed: nothing in these
tests connects to an instance address.
"""

from __future__ import annotations

import os

import pytest
from botocore.exceptions import ClientError

from tests.support.testcloud import TestCloud

AMI = "ami-12345678"


def run(client, n=1, min_count=1, **kw):
    return client.run_instances(ImageId=AMI, MinCount=min_count, MaxCount=n, **kw)["Instances"]


def test_separate_processes_are_separate_clouds(ec2_cloud):
    a, b = ec2_cloud("a"), ec2_cloud("b")
    assert a.proc.pid != b.proc.pid and a.endpoint != b.endpoint
    run(a.client(), 3)
    assert len(a.live_instances()) == 3
    assert b.live_instances() == []


def test_listens_on_loopback_only(ec2_cloud):
    cloud = ec2_cloud()
    assert cloud.endpoint.startswith("http://127.0.0.1:")
    # Port of our child process appears bound to 127.0.0.1 only in /proc/net/tcp.
    port_hex = f"{cloud.port:04X}"
    with open("/proc/net/tcp") as f:
        listeners = [ln.split()[1] for ln in f.readlines()[1:] if ln.split()[3] == "0A"]
    ours = [addr for addr in listeners if addr.endswith(":" + port_hex)]
    assert ours == ["0100007F:" + port_hex]


def test_max_count_launches_all_up_to_max(ec2_cloud):
    # moto alone launches MinCount and ignores MaxCount; the middleware gives AWS semantics.
    cloud = ec2_cloud()
    assert len(run(cloud.client(), 7)) == 7


def test_quota_partial_then_limit_exceeded(ec2_cloud):
    cloud = ec2_cloud(quota=5)
    client = cloud.client()
    assert len(run(client, 3)) == 3
    # MinCount 1 fits, MaxCount 4 does not: launches what fits (2).
    assert len(run(client, 4)) == 2
    with pytest.raises(ClientError) as info:
        run(client, 1)
    assert info.value.response["Error"]["Code"] == "InstanceLimitExceeded"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    # MinCount above the room is refused outright, nothing launched.
    cloud.set_quota(7)
    with pytest.raises(ClientError):
        run(client, 3, min_count=3)
    assert cloud.stats()["live"] == 5
    # Terminated instances free their slot.
    ids = [i["InstanceId"] for i in cloud.live_instances()][:2]
    client.terminate_instances(InstanceIds=ids)
    assert len(run(client, 10)) == 4


def test_armed_fault_counts_down(ec2_cloud):
    cloud = ec2_cloud()
    client = cloud.client(max_attempts=1)
    cloud.arm("InsufficientInstanceCapacity", count=2)
    for _ in range(2):
        with pytest.raises(ClientError) as info:
            run(client)
        assert info.value.response["Error"]["Code"] == "InsufficientInstanceCapacity"
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert len(run(client)) == 1
    assert cloud.calls("RunInstances") == 3


def test_botocore_retry_hides_a_single_500(ec2_cloud):
    # Why tests must arm as many faults as the client makes attempts.
    cloud = ec2_cloud()
    cloud.arm(count=1)
    assert len(run(cloud.client(max_attempts=3))) == 1
    assert cloud.calls("RunInstances") == 2


def test_fault_for_spot_only(ec2_cloud):
    cloud = ec2_cloud()
    client = cloud.client(max_attempts=1)
    cloud.arm(count=1, market="spot", status=400)
    assert len(run(client)) == 1  # on-demand passes
    with pytest.raises(ClientError):
        run(client, InstanceMarketOptions={"MarketType": "spot"})
    assert (
        run(client, InstanceMarketOptions={"MarketType": "spot"})[0]["InstanceLifecycle"] == "spot"
    )


def test_client_token_idempotent(ec2_cloud):
    cloud = ec2_cloud()
    client = cloud.client()
    first = run(client, 3, ClientToken="tok-1")
    again = run(client, 3, ClientToken="tok-1")
    assert [i["InstanceId"] for i in again] == [i["InstanceId"] for i in first]
    assert len(cloud.live_instances()) == 3
    other = run(client, 1, ClientToken="tok-2")
    assert other[0]["InstanceId"] not in {i["InstanceId"] for i in first}


def test_backing_rewrites_addresses(ec2_cloud):
    cloud = ec2_cloud()
    client = cloud.client()
    a, b = run(client, 2)
    cloud.back({a["InstanceId"]: "127.0.0.77"})
    seen = {i["InstanceId"]: i for i in cloud.live_instances()}
    assert seen[a["InstanceId"]]["PublicIpAddress"] == "127.0.0.77"
    assert seen[a["InstanceId"]]["PrivateIpAddress"] == "127.0.0.77"
    assert seen[b["InstanceId"]]["PrivateIpAddress"] != "127.0.0.77"
    assert not seen[b["InstanceId"]]["PrivateIpAddress"].startswith("127.")


def test_backing_pool_assigns_caps_and_recycles(ec2_cloud):
    cloud = ec2_cloud()
    client = cloud.client()
    cloud.set_pool(["127.0.0.21", "127.0.0.22"])
    launched = run(client, 5)  # the pool caps capacity at 2
    assert sorted(i["PublicIpAddress"] for i in launched) == ["127.0.0.21", "127.0.0.22"]
    with pytest.raises(ClientError):
        run(client)
    client.terminate_instances(InstanceIds=[launched[0]["InstanceId"]])
    again = run(client, 3)
    assert [i["PublicIpAddress"] for i in again] == [launched[0]["PublicIpAddress"]]


def test_reset_clears_everything(ec2_cloud):
    cloud = ec2_cloud(quota=3)
    run(cloud.client(), 2)
    cloud.arm(count=5)
    stats = cloud.reset()
    assert stats["live"] == 0 and stats["quota"] is None and stats["faults"] == []
    assert stats["calls"] == {}


def test_stop_terminates_by_pid(tmp_path):
    cloud = TestCloud("solo", log_dir=tmp_path).start()
    pid = cloud.proc.pid
    os.kill(pid, 0)  # alive
    cloud.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_slow_answer_after_the_cloud_acted(ec2_cloud):
    """A lost reply: the instance exists though the caller gave up waiting."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import ReadTimeoutError

    from tests.support.testcloud import ACCESS_KEY, REGION, SECRET_KEY

    cloud = ec2_cloud()
    cloud.client().describe_regions()  # warm moto's lazy backend first
    impatient = boto3.session.Session().client(
        "ec2",
        region_name=REGION,
        endpoint_url=cloud.endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(read_timeout=0.5, retries={"mode": "standard", "total_max_attempts": 1}),
    )
    cloud.slow("RunInstances", delay=3)
    with pytest.raises(ReadTimeoutError):
        run(impatient, 2, ClientToken="lost-reply")
    assert len(cloud.live_instances()) == 2
    # Retrying with the same token returns those two and creates nothing.
    assert len(run(cloud.client(), 2, ClientToken="lost-reply")) == 2
    assert len(cloud.live_instances()) == 2
