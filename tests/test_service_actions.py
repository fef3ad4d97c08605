"""The Auto Scaling actions and one reconcile pass, in process, on `memory` clouds.

No server and no loop here: each action is called as the app calls it, and
`reconcile_group` (the loop's one engine call) is called by hand, so the
overflow, replacement and shrink rules are checked in milliseconds. The real
server, boto3 and real clouds are in test_service_ec2/lxc/restart.
"""

from __future__ import annotations

import base64
from collections import Counter
from pathlib import Path

import pytest

import cloudinitd.testing  # noqa: F401  (registers the `memory` provider kind)
from cloudinitd.plan.limits import Limits
from cloudinitd.plan.model import CloudSpec
from cloudinitd.service import actions, groups
from cloudinitd.service.actions import ACTIONS, Api
from cloudinitd.service.query import ApiError
from cloudinitd.service.reconcile import delete_group, reconcile_group
from cloudinitd.service.state import LaunchConfig, ServiceState
from cloudinitd.store import Store
from cloudinitd.testing import forget_clouds, memory_cloud


@pytest.fixture
def api(tmp_path: Path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "clouds.yml").write_text("m1: {provider: memory}\nm2: {provider: memory}\n"
                                     "hosts: {provider: static}\n")
    made = Api(home=home, store=Store(home), state=ServiceState(home),
               limits=Limits(per_service=10, per_run=12))
    yield made
    forget_clouds(home)


def call(api: Api, user: str, action: str, **params: object) -> object:
    return ACTIONS[action](api, user, {k: str(v) for k, v in params.items()})


def code(api: Api, user: str, action: str, **params: object) -> str:
    with pytest.raises(ApiError) as err:
        call(api, user, action, **params)
    return err.value.code


def lcs(api: Api, user: str = "alice", name: str = "lc", clouds=("m1", "m2")) -> None:
    for cloud in clouds:
        call(api, user, "CreateLaunchConfiguration", LaunchConfigurationName=f"{name}@{cloud}",
             ImageId="img", InstanceType="small")


def phantom(api: Api, user: str, name: str, clouds: str, n: int) -> None:
    call(api, user, "CreateAutoScalingGroup", AutoScalingGroupName=name,
         LaunchConfigurationName="lc", MinSize=n, MaxSize=n,
         **{"Tags.member.1.Key": "PHANTOM_DEFINITION",
            "Tags.member.1.Value": "error_overflow_n_preserving",
            "Tags.member.2.Key": "clouds", "Tags.member.2.Value": clouds,
            "Tags.member.3.Key": "n_preserve", "Tags.member.3.Value": n})


def per_cloud(api: Api, run: str) -> dict[str, int]:
    return dict(Counter(r.cloud for r in api.store.instances(run)))


def reconcile(api: Api, user: str, name: str) -> str:
    group = api.state.group(user, name)
    return reconcile_group(api.home, api.store, group.run, group.desired)


def test_overflow_replace_and_shrink_last_cloud_first(api):
    lcs(api)
    phantom(api, "alice", "web", "m1:2,m2:-1", 3)
    assert reconcile(api, "alice", "web") == "repaired"
    assert per_cloud(api, "alice.web") == {"m1": 2, "m2": 1}
    assert reconcile(api, "alice", "web") == "steady"  # nothing to do, nothing recorded
    events = len(api.store.events("alice.web"))
    assert reconcile(api, "alice", "web") == "steady"
    assert len(api.store.events("alice.web")) == events

    lost = memory_cloud(api.home, "m1").lose("vm", 0)
    crashed = memory_cloud(api.home, "m2").crash("vm", 2)
    assert reconcile(api, "alice", "web") == "repaired"
    live = {r.instance_id for r in api.store.instances("alice.web")}
    assert len(live) == 3 and not live & {lost, crashed}
    assert crashed in memory_cloud(api.home, "m2").terminated  # the dead one is removed
    assert per_cloud(api, "alice.web") == {"m1": 2, "m2": 1}

    call(api, "alice", "SetDesiredCapacity", AutoScalingGroupName="web", DesiredCapacity=1)
    reconcile(api, "alice", "web")
    assert per_cloud(api, "alice.web") == {"m1": 1}
    assert api.store.run("alice.web").counts == {"vm": 1}  # what `status` shows

    call(api, "alice", "DeleteAutoScalingGroup", AutoScalingGroupName="web")
    assert code(api, "alice", "SetDesiredCapacity", AutoScalingGroupName="web",
                DesiredCapacity=2) == "ScalingActivityInProgress"
    assert delete_group(api.home, api.store, "alice.web")
    assert api.store.instances("alice.web") == []


def test_a_full_cloud_spills_to_the_next(api):
    memory_cloud(api.home, "m1").faults["capacity"] = 1
    lcs(api)
    phantom(api, "alice", "web", "m1:-1,m2:-1", 3)
    reconcile(api, "alice", "web")
    assert per_cloud(api, "alice.web") == {"m1": 1, "m2": 2}


def test_limits_per_group_and_per_user(api):
    lcs(api)
    assert code(api, "alice", "CreateAutoScalingGroup", AutoScalingGroupName="huge",
                LaunchConfigurationName="lc@m1", MinSize=11, MaxSize=11) == "ValidationError"
    phantom(api, "alice", "a", "m1:-1", 10)
    with pytest.raises(ApiError) as err:
        phantom(api, "alice", "b", "m1:-1", 3)
    assert err.value.code == "LimitExceeded"  # 13 > 12 for one user
    phantom(api, "alice", "b", "m1:-1", 2)
    assert code(api, "alice", "SetDesiredCapacity", AutoScalingGroupName="b",
                DesiredCapacity=3) == "LimitExceeded"
    lcs(api, "bob")
    phantom(api, "bob", "a", "m1:-1", 10)  # another user's own budget


def test_validation_of_names_clouds_and_tags(api):
    lcs(api)
    assert code(api, "alice", "CreateLaunchConfiguration", LaunchConfigurationName="x@hosts",
                ImageId="i", InstanceType="small") == "ValidationError"  # static: no launches
    assert code(api, "alice", "CreateLaunchConfiguration", LaunchConfigurationName="x@m1",
                ImageId="i\x1b[31m", InstanceType="small") == "ValidationError"
    assert code(api, "alice", "CreateLaunchConfiguration", LaunchConfigurationName="x@m1",
                ImageId="i", InstanceType="small",
                UserData=base64.b64encode(b"x" * 16385).decode()) == "ValidationError"
    assert code(api, "alice", "CreateAutoScalingGroup", AutoScalingGroupName="g",
                LaunchConfigurationName="lc", MinSize=1, MaxSize=1) == "ValidationError"
    assert code(api, "alice", "CreateAutoScalingGroup", AutoScalingGroupName="g",
                LaunchConfigurationName="lc@m1", MinSize=2, MaxSize=1) == "ValidationError"
    for clouds in ("m1:2,m1:3", "m1", "m1:x", "m3:1", ",".join(f"c{i}:1" for i in range(11))):
        with pytest.raises(ApiError) as err:
            phantom(api, "alice", "g", clouds, 1)
        assert err.value.code == "ValidationError", clouds
    with pytest.raises(ApiError) as err:
        call(api, "alice", "CreateAutoScalingGroup", AutoScalingGroupName="g",
             LaunchConfigurationName="lc@m1", MinSize=1, MaxSize=1,
             **{"Tags.member.1.Key": "Name", "Tags.member.1.Value": "a\nb"})
    assert err.value.code == "ValidationError"
    name = "g" * 52  # alice.ggg...-N must stay a valid run name (63 characters)
    assert code(api, "alice", "CreateAutoScalingGroup", AutoScalingGroupName=name,
                LaunchConfigurationName="lc@m1", MinSize=1, MaxSize=1) == "ValidationError"
    assert api.state.groups("alice") == []


def test_describe_pages_and_scoping(api):
    lcs(api, clouds=("m1", "m2"))
    lcs(api, name="other", clouds=("m1",))
    first = call(api, "alice", "DescribeLaunchConfigurations", MaxRecords=2)
    names = [m.findtext("LaunchConfigurationName") for m in first.find("LaunchConfigurations")]
    token = first.findtext("NextToken")
    assert names == ["lc@m1", "lc@m2"] and token
    rest = call(api, "alice", "DescribeLaunchConfigurations", NextToken=token)
    assert [m.findtext("LaunchConfigurationName") for m in rest.find("LaunchConfigurations")] \
        == ["other@m1"] and rest.findtext("NextToken") is None
    bob = call(api, "bob", "DescribeLaunchConfigurations")
    assert list(bob.find("LaunchConfigurations")) == []
    assert code(api, "bob", "DeleteLaunchConfiguration",
                LaunchConfigurationName="lc@m1") == "ValidationError"


def test_plan_document_maps_each_ec2_clouds_own_image_and_shares_user_data():
    catalog = {"a": CloudSpec("a", "ec2", {"region": "r"}),
               "b": CloudSpec("b", "ec2", {"region": "r"}),
               "l": CloudSpec("l", "local", {})}

    def lc(cloud, image="ami-1", size="m1.small", user_data=b"#!/bin/sh\n", key=None):
        return LaunchConfig("alice", "lc", cloud, image, size, key, user_data, 0.0)

    doc = groups.plan_document([("a", 3), ("b", -1)],
                               {"a": lc("a"), "b": lc("b", "ami-2", "t3.large", key="k")},
                               catalog, 5)
    svc = doc["services"]["vm"]
    assert (svc["image"], svc["size"], svc["count"]) == ("ami-1", "m1.small", 5)
    assert svc["clouds"] == [{"cloud": "a", "max": 3}, {"cloud": "b", "max": -1}]
    assert doc["clouds"]["b"]["images"] == {"ami-1": "ami-2"}
    assert doc["clouds"]["b"]["instance_types"] == {"m1.small": "t3.large"}
    assert doc["clouds"]["b"]["key_name"] == "k" and "images" not in doc["clouds"]["a"]
    assert base64.b64decode(svc["user_data_base64"]) == b"#!/bin/sh\n"  # bytes as sent
    with pytest.raises(ApiError):  # Phantom kept one UserData per group
        groups.plan_document([("a", 1), ("b", 1)], {"a": lc("a"), "b": lc("b", user_data=b"x")},
                             catalog, 1)
    with pytest.raises(ApiError):  # a local cloud cannot map images
        groups.plan_document([("a", 1), ("l", 1)], {"a": lc("a"), "l": lc("l", "debian-12")},
                             catalog, 1)
    assert actions.PHANTOM_POLICY == "error_overflow_n_preserving"


def test_the_loop_keeps_groups_and_finishes_deletions(api):
    from cloudinitd.service.reconcile import Reconciler

    lcs(api)
    phantom(api, "alice", "web", "m1:2,m2:-1", 3)
    phantom(api, "alice", "old", "m2:-1", 1)
    loop = Reconciler(api.home, api.store, api.state, interval=0.2)
    loop.start()
    try:
        _until(lambda: per_cloud(api, "alice.web") == {"m1": 2, "m2": 1}
               and per_cloud(api, "alice.old") == {"m2": 1})
        # A deletion recorded by a request (or left by a killed server) is finished.
        call(api, "alice", "DeleteAutoScalingGroup", AutoScalingGroupName="old")
        loop.wake("alice.old")
        _until(lambda: api.state.group("alice", "old") is None)
        assert api.store.instances("alice.old") == []
        assert not groups.plan_path(api.home, "alice.old").exists()
        assert per_cloud(api, "alice.web") == {"m1": 2, "m2": 1}
    finally:
        assert loop.stop(grace=30)


def _until(check, timeout: float = 30) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
