"""Opt-in smoke test against a real EC2-compatible cloud (AWS, or any EC2 API).

Everything else in this suite runs on parts that exist on this machine (sshd
on loopback, LXC, QEMU, a moto EC2 cloud). This test is for users who have a
real cloud account: it boots one small plan there, checks it, scales it,
terminates it, and then asks the cloud itself (by the run's tag) that no
instance is left. It costs a few minutes of the smallest instance.

It runs only when CLOUDINITD_REAL_EC2 is set; otherwise it is reported as
SKIPPED with the reason (it did not run, so it is not counted as passed):

    CLOUDINITD_REAL_EC2=env            keys from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY
    CLOUDINITD_REAL_EC2=profile:NAME   (or just NAME) an AWS CLI profile
    CLOUDINITD_REAL_EC2_IMAGE=ami-...  required: a Debian 12 (or similar cloud-init) image
    CLOUDINITD_REAL_EC2_REGION         default: the profile's region, else us-east-1
    CLOUDINITD_REAL_EC2_ENDPOINT       for an EC2-compatible cloud other than AWS
    CLOUDINITD_REAL_EC2_SIZE           default: small
    CLOUDINITD_REAL_EC2_USER           SSH user of the image, default: admin (Debian)
    CLOUDINITD_REAL_EC2_SUBNET, CLOUDINITD_REAL_EC2_SECURITY_GROUP
                                       where to launch; the group must let this
                                       machine reach port 22

    CLOUDINITD_REAL_EC2=env CLOUDINITD_REAL_EC2_IMAGE=ami-0123 \
        .venv/bin/python -m pytest -v tests/test_real_ec2.py
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import boto3
import pytest

from tests.support.cli import Cli, write_plan

OPT_IN = "CLOUDINITD_REAL_EC2"

pytestmark = pytest.mark.slow


def _setting(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"{OPT_IN}_{name}") or default


def _credentials(choice: str) -> tuple[dict, dict]:
    """(plan credentials entry, boto3 Session kwargs) for the opt-in value."""
    if choice == "env":
        for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            if not os.environ.get(var):
                pytest.fail(f"{OPT_IN}=env but {var} is not set", pytrace=False)
        return ({"access_key_env": "AWS_ACCESS_KEY_ID", "secret_key_env": "AWS_SECRET_ACCESS_KEY"},
                {})
    profile = choice.removeprefix("profile:")
    return {"profile": profile}, {"profile_name": profile}


@pytest.fixture
def real_cloud():
    choice = os.environ.get(OPT_IN, "").strip()
    if not choice:
        pytest.skip(f"did not run: set {OPT_IN}=env or {OPT_IN}=profile:NAME (and "
                    f"{OPT_IN}_IMAGE=ami-...) to boot a small plan on a real EC2 cloud")
    image = _setting("IMAGE")
    if not image:
        pytest.fail(f"{OPT_IN} is set but {OPT_IN}_IMAGE (an AMI id) is not", pytrace=False)
    creds, session_kwargs = _credentials(choice)
    session = boto3.session.Session(**session_kwargs)
    region = _setting("REGION") or session.region_name or "us-east-1"
    cloud: dict = {"provider": "ec2", "region": region, "credentials": creds}
    if _setting("ENDPOINT"):
        cloud["endpoint"] = _setting("ENDPOINT")
    if _setting("SUBNET"):
        cloud["subnet"] = _setting("SUBNET")
    if _setting("SECURITY_GROUP"):
        cloud["security_groups"] = [_setting("SECURITY_GROUP")]
    client = session.client("ec2", region_name=region, endpoint_url=_setting("ENDPOINT"))
    return cloud, image, client


def _live(client, run: str) -> list[str]:
    """Instances of `run` (by its tag) that are not terminated or terminating."""
    ids = []
    pages = client.get_paginator("describe_instances").paginate(Filters=[
        {"Name": "tag:cloudinitd:run", "Values": [run]},
        {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]},
    ])
    for page in pages:
        for reservation in page["Reservations"]:
            ids.extend(i["InstanceId"] for i in reservation["Instances"])
    return ids


def test_boot_check_scale_terminate_leaves_nothing(tmp_path: Path, real_cloud):
    cloud, image, client = real_cloud
    run = f"smoke-{secrets.token_hex(3)}"
    plan = write_plan(tmp_path / "plan", f"""
        name: smoke
        clouds:
          real: {json.dumps(cloud)}
        services:
          node:
            cloud: real
            image: {image}
            size: {_setting("SIZE", "small")}
            ssh_user: {_setting("USER", "admin")}
            count: 1
            boot: boot.sh.j2
            ready: ready.sh.j2
            exports: [kernel]
        """, {
        "boot.sh.j2": 'echo "kernel=$(uname -r)" > "$CLOUDINITD_EXPORT"\n',
        "ready.sh.j2": "test -d /proc/1\n",
    })
    cli = Cli(tmp_path / "home")
    try:
        booted = cli("boot", plan, "--name", run, "--json", timeout=1800).json()
        assert booted["ok"] is True, booted
        status = cli("status", run, "--check", "--json", timeout=900).json()
        assert status["healthy"] is True
        (inst,) = status["services"]["node"]["instances"]
        assert inst["attributes"]["kernel"]  # the boot script ran there and exported
        assert len(_live(client, run)) == 1

        cli("scale", run, "node", "2", "--json", timeout=1800)
        status = cli("status", run, "--check", "--json", timeout=900).json()
        assert status["healthy"] is True
        assert len(status["services"]["node"]["instances"]) == 2
        assert len(_live(client, run)) == 2
    finally:
        done = cli("terminate", run, "--json", expect=None, timeout=1800)
        # Asked of the cloud, not of our store: nothing of this run may keep running.
        assert _live(client, run) == [], "instances left running: terminate them by hand"
    assert done.code == 0, done.err
