"""Ec2Provider against real moto server processes over HTTP (the EC2 test cloud).

No instance address is ever contacted: these tests launch instances with no
scripts and never wait for SSH (moto's addresses belong to nobody).
"""

from __future__ import annotations

import logging
import socket
import uuid

import pytest

from cloudinitd.errors import CapacityError, PlanError, ProviderError
from cloudinitd.plan.model import CloudSpec
from cloudinitd.providers import get_provider
from cloudinitd.providers.base import RUNNING, TERMINATED, LaunchRequest
from cloudinitd.providers.ec2 import Ec2Provider
from cloudinitd.providers.ec2.client import is_capacity
from cloudinitd.providers.ec2.tags import decode_indexes, encode_indexes
from tests.support.testcloud import SECRET_KEY

PUBKEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHx5wQe1Vq6bXh0m0d3mJxk6iH0cS3z6m2fXn8V0q4mB test"


@pytest.fixture
def make_provider(ec2_cloud, ec2_credentials, tmp_path):
    def make(cloud=None, name="tc", **options) -> tuple[Ec2Provider, object]:
        cloud = cloud or ec2_cloud(name)
        opts = cloud.cloud_options(*ec2_credentials, **options)
        return get_provider(CloudSpec(name, "ec2", opts), tmp_path), cloud

    return make


def request(run="r1", service="web", indexes=(0, 1, 2), token=None, **kw) -> LaunchRequest:
    indexes = list(indexes)
    return LaunchRequest(
        run=run,
        plan="testplan",
        service=service,
        cloud="tc",
        indexes=indexes,
        client_token=token or uuid.uuid4().hex,
        tags={"run": run, "service": service, "plan": "testplan"},
        ssh_user="root",
        ssh_public_key=PUBKEY,
        hostnames=[f"{service}-{i}" for i in indexes],
        image=kw.pop("image", "ami-12345678"),
        **kw,
    )


class Recorder:
    """on_launched callback that also notes how far the cloud had got when called."""

    def __init__(self, cloud=None):
        self.cloud = cloud
        self.seen: list[tuple[int, str]] = []
        self.create_tags_at_first_call: int | None = None

    def __call__(self, index, info):
        if self.cloud is not None and self.create_tags_at_first_call is None:
            self.create_tags_at_first_call = self.cloud.calls("CreateTags")
        self.seen.append((index, info.instance_id))


def tags_of(inst) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in inst.get("Tags", [])}


def test_provider_registered_under_kind_ec2(make_provider):
    provider, _ = make_provider()
    assert isinstance(provider, Ec2Provider) and provider.kind == "ec2"


def test_launch_one_call_with_tags(make_provider):
    provider, cloud = make_provider()
    rec = Recorder(cloud)
    infos = provider.launch(request(indexes=[0, 1, 2]), rec)
    assert cloud.calls("RunInstances") == 1
    assert [i for i, _ in rec.seen] == [0, 1, 2]
    assert rec.create_tags_at_first_call == 0  # recorded before anything else happened
    assert [info.instance_id for info in infos] == [iid for _, iid in rec.seen]
    assert all(info.service == "web" and info.extra["lifecycle"] == "on-demand" for info in infos)
    live = {i["InstanceId"]: i for i in cloud.live_instances(run="r1")}
    assert set(live) == {info.instance_id for info in infos}
    for info in infos:
        tags = tags_of(live[info.instance_id])
        assert tags["cloudinitd:run"] == "r1"
        assert tags["cloudinitd:service"] == "web"
        assert tags["cloudinitd:plan"] == "testplan"
        assert tags["cloudinitd:index"] == str(info.index)
        assert tags["Name"] == f"r1-web-{info.index}"
        assert live[info.instance_id]["ClientToken"]
        assert live[info.instance_id]["KeyName"] == "cloudinitd-r1"


def test_client_token_idempotent(make_provider):
    provider, cloud = make_provider()
    req = request(indexes=[0, 1], token="tok-same")
    first = provider.launch(req, Recorder())
    again = provider.launch(req, Recorder())
    assert [i.instance_id for i in again] == [i.instance_id for i in first]
    assert len(cloud.live_instances()) == 2


def test_wait_running_and_describe(make_provider):
    provider, _ = make_provider()
    infos = provider.launch(request(indexes=[0, 1]), Recorder())
    ids = [i.instance_id for i in infos]
    running = provider.wait_running(ids, timeout=30)
    assert [i.instance_id for i in running] == ids
    assert all(i.state == RUNNING and i.address and i.private_address for i in running)
    described = provider.describe([*ids, "i-0000000000000dead"])
    assert [d.state for d in described] == [RUNNING, RUNNING, TERMINATED]


def test_address_private_and_mappings(make_provider):
    provider, cloud = make_provider(
        address="private",
        instance_types={"small": "m5.large"},
        images={"debian-12": "ami-0deb12"},
        key_name="preexisting",
    )
    (info,) = provider.launch(request(indexes=[0], size="small", image="debian-12"), Recorder())
    (inst,) = cloud.live_instances()
    assert inst["InstanceType"] == "m5.large"
    assert inst["ImageId"] == "ami-0deb12"
    assert inst["KeyName"] == "preexisting"
    assert info.address == inst["PrivateIpAddress"] != inst.get("PublicIpAddress")
    assert cloud.client().describe_key_pairs()["KeyPairs"] == []  # nothing imported


def test_default_size_and_unknown_size(make_provider):
    provider, cloud = make_provider()
    provider.launch(request(indexes=[0], service="a"), Recorder())
    provider.launch(request(indexes=[0], service="b", size="c6i.xlarge"), Recorder())
    types = {tags_of(i)["cloudinitd:service"]: i["InstanceType"] for i in cloud.live_instances()}
    assert types == {"a": "t3.small", "b": "c6i.xlarge"}


def test_key_pair_imported_then_released(make_provider):
    provider, cloud = make_provider()
    provider.launch(request(run="kp", indexes=[0]), Recorder())
    names = [k["KeyName"] for k in cloud.client().describe_key_pairs()["KeyPairs"]]
    assert names == ["cloudinitd-kp"]
    provider.launch(request(run="kp", service="other", indexes=[0]), Recorder())  # reuses it
    provider.release("kp")
    assert cloud.client().describe_key_pairs()["KeyPairs"] == []
    provider.release("kp")  # idempotent


def test_terminate_waits_until_terminated(make_provider):
    provider, cloud = make_provider()
    infos = provider.launch(request(indexes=[0, 1, 2]), Recorder())
    ids = [i.instance_id for i in infos]
    provider.terminate([*ids, "i-0000000000000beef"], timeout=30)
    states = {
        i["InstanceId"]: i["State"]["Name"]
        for r in cloud.client().describe_instances(InstanceIds=ids)["Reservations"]
        for i in r["Instances"]
    }
    assert states == dict.fromkeys(ids, "terminated")
    assert [d.state for d in provider.describe(ids)] == [TERMINATED] * 3
    provider.terminate(ids, timeout=30)  # again: nothing left to do, no error


def test_find_run_instances_without_the_store(make_provider, ec2_credentials, tmp_path):
    provider, cloud = make_provider()
    provider.launch(request(run="lost", service="db", indexes=[0, 1]), Recorder())
    provider.launch(request(run="lost", service="web", indexes=[0]), Recorder())
    provider.launch(request(run="other", indexes=[0]), Recorder())
    # A fresh provider object knows nothing of the launches above.
    spec = CloudSpec("tc", "ec2", cloud.cloud_options(*ec2_credentials))
    fresh = get_provider(spec, tmp_path)
    found = fresh.find_run_instances("lost")
    assert sorted((f.service, f.index) for f in found) == [("db", 0), ("db", 1), ("web", 0)]
    fresh.terminate([f.instance_id for f in found if f.service == "web"], timeout=30)
    assert sorted((f.service, f.index) for f in fresh.find_run_instances("lost")) == [
        ("db", 0),
        ("db", 1),
    ]
    assert len(fresh.find_run_instances("other")) == 1
    assert fresh.find_run_instances("never") == []


def test_quota_partial_launch_raises_capacity_with_launched(make_provider):
    provider, cloud = make_provider()
    cloud.set_quota(2)
    rec = Recorder()
    with pytest.raises(CapacityError) as info:
        provider.launch(request(indexes=[0, 1, 2]), rec)
    launched = info.value.launched
    assert len(launched) == 2 and [i for i, _ in rec.seen] == [0, 1]
    assert [x.instance_id for x in launched] == [iid for _, iid in rec.seen]
    with pytest.raises(CapacityError) as full:
        provider.launch(request(indexes=[3]), Recorder())
    assert full.value.launched == []
    assert "InstanceLimitExceeded" in str(full.value)


def test_armed_fault_surfaces_as_capacity_error(make_provider):
    provider, cloud = make_provider()
    cloud.arm("InsufficientInstanceCapacity", count=3)  # default: 3 attempts in all
    with pytest.raises(CapacityError) as info:
        provider.launch(request(indexes=[0]), Recorder())
    assert "InsufficientInstanceCapacity" in str(info.value)
    assert cloud.calls("RunInstances") == 3
    assert cloud.live_instances() == []
    assert len(provider.launch(request(indexes=[0]), Recorder())) == 1


def test_single_fault_absorbed_by_retry_same_token(make_provider):
    provider, cloud = make_provider()
    cloud.arm(count=1)
    infos = provider.launch(request(indexes=[0, 1]), Recorder())
    assert len(infos) == 2 and cloud.calls("RunInstances") == 2


def test_max_attempts_option(make_provider):
    provider, cloud = make_provider(max_attempts=1)
    cloud.arm(count=1)
    with pytest.raises(CapacityError):
        provider.launch(request(indexes=[0]), Recorder())
    assert cloud.calls("RunInstances") == 1


def test_spot_launch(make_provider):
    provider, _ = make_provider()
    infos = provider.launch(request(indexes=[0, 1], spot={"max_price": 0.05}), Recorder())
    assert [i.extra["lifecycle"] for i in infos] == ["spot", "spot"]


def test_spot_fallback_to_on_demand(make_provider):
    provider, cloud = make_provider()
    cloud.arm("InsufficientInstanceCapacity", count=5, status=400, market="spot")
    req = request(indexes=[0, 1], spot={"max_price": "0.05", "fallback": "on-demand"})
    infos = provider.launch(req, Recorder())
    assert [i.extra["lifecycle"] for i in infos] == ["on-demand", "on-demand"]
    assert cloud.calls("RunInstances") == 2
    assert all("InstanceLifecycle" not in i for i in cloud.live_instances())


def test_spot_without_fallback_is_capacity_error(make_provider):
    provider, cloud = make_provider()
    cloud.arm("InsufficientInstanceCapacity", count=5, status=400, market="spot")
    with pytest.raises(CapacityError):
        provider.launch(request(indexes=[0], spot={"max_price": "0.05"}), Recorder())
    assert cloud.live_instances() == []


def test_check_summary(make_provider):
    provider, _ = make_provider()
    summary = provider.check()
    assert "\n" not in summary and "zone(s)" in summary and "us-east-1" in summary
    assert "environment CLOUDINITD_TEST_EC2_ACCESS_KEY" in summary


def test_check_bad_endpoint_is_clear(ec2_credentials, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ak, sk = ec2_credentials
    spec = CloudSpec(
        "nowhere",
        "ec2",
        {
            "endpoint": f"http://127.0.0.1:{port}",
            "region": "us-east-1",
            "max_attempts": 1,
            "credentials": {"access_key_env": ak, "secret_key_env": sk},
        },
    )
    with pytest.raises(ProviderError) as info:
        get_provider(spec, tmp_path).check()
    message = str(info.value)
    assert "cannot reach the EC2 endpoint" in message and "nowhere" in message
    assert "\n" not in message


def test_check_rejected_credentials(make_provider):
    provider, cloud = make_provider()
    cloud.arm("AuthFailure", count=1, status=401, action="DescribeAvailabilityZones")
    with pytest.raises(ProviderError) as info:
        provider.check()
    assert "credentials rejected (AuthFailure)" in str(info.value)


def test_missing_env_var_names_it(make_provider, monkeypatch):
    provider, _ = make_provider()
    monkeypatch.delenv("CLOUDINITD_TEST_EC2_SECRET_KEY")
    with pytest.raises(ProviderError) as info:
        provider.check()
    assert "CLOUDINITD_TEST_EC2_SECRET_KEY" in str(info.value) and "not set" in str(info.value)


@pytest.mark.parametrize(
    "options",
    [
        {"address": "elastic"},
        {"credentials": {"secret_key": "x"}},
        {"credentials": {"access_key_env": "A"}},
        {"credentials": {"access_key_env": "A", "secret_key_env": "not a/name+"}},
        {"instance_types": ["t3.small"]},
        {"endpiont": "http://x"},
    ],
)
def test_bad_options_are_plan_errors(options, tmp_path):
    with pytest.raises(PlanError) as info:
        get_provider(CloudSpec("bad", "ec2", options), tmp_path)
    assert "cloud 'bad'" in str(info.value)
    assert "not a/name+" not in str(info.value)


def test_secret_never_in_infos_logs_or_errors(make_provider, caplog):
    caplog.set_level(logging.DEBUG)  # botocore's own debug logging included
    provider, cloud = make_provider()
    texts = [provider.check()]
    infos = provider.launch(request(indexes=[0, 1], spot={"max_price": 1}), Recorder())
    ids = [i.instance_id for i in infos]
    texts += [repr(i) for i in infos]
    texts += [repr(i) for i in provider.wait_running(ids, timeout=30)]
    texts += [repr(i) for i in provider.find_run_instances("r1")]
    cloud.arm(count=3)
    with pytest.raises(CapacityError) as info:
        provider.launch(request(indexes=[2]), Recorder())
    texts.append(str(info.value))
    provider.terminate(ids, timeout=30)
    provider.release("r1")
    texts.append(repr(provider.cloud))
    assert caplog.text  # botocore did log at debug level
    for text in [*texts, caplog.text]:
        assert SECRET_KEY not in text


@pytest.mark.parametrize(
    ("code", "capacity"),
    [
        ("InstanceLimitExceeded", True),
        ("InsufficientInstanceCapacity", True),
        ("VcpuLimitExceeded", True),
        ("MaxSpotInstanceCountExceeded", True),
        ("ServiceQuotaExceededException", True),
        ("RequestLimitExceeded", False),
        ("InvalidAMIID.NotFound", False),
        (None, False),
    ],
)
def test_capacity_codes(code, capacity):
    assert is_capacity(code) is capacity


@pytest.mark.parametrize(
    ("indexes", "text"),
    [([0], "0"), ([0, 1, 2], "0-2"), ([0, 1, 2, 5, 7, 8], "0-2,5,7-8"), ([3, 9], "3,9")],
)
def test_index_ranges_round_trip(indexes, text):
    assert encode_indexes(indexes) == text
    assert decode_indexes(text) == indexes


def test_index_recovered_when_create_tags_fails(make_provider, caplog):
    provider, cloud = make_provider()
    cloud.arm("InternalError", count=100, status=400, action="CreateTags")
    infos = provider.launch(request(run="nt", indexes=[4, 5, 6]), Recorder())
    assert [i.index for i in infos] == [4, 5, 6]
    assert "could not tag" in caplog.text
    assert all("cloudinitd:index" not in tags_of(i) for i in cloud.live_instances())
    found = sorted(f.index for f in provider.find_run_instances("nt"))
    assert found == [4, 5, 6]
