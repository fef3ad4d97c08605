"""UserData on EC2, read back from the cloud: the instance's bytes (DescribeInstanceAttribute
on the moto server) are exactly the caller's, whether given by a plan (`user_data_base64`,
gzip) or through `cloudinitd serve` (boto3's UserData); the lease adds its part without
losing the caller's.
"""

from __future__ import annotations

import base64
import email
import gzip
import os
import textwrap
import time
import uuid
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

from cloudinitd.plan import userdata
from cloudinitd.plan.loader import load_plan
from cloudinitd.plan.model import CloudSpec
from cloudinitd.providers import get_provider
from cloudinitd.providers.base import LaunchRequest
from tests.support.serve import create_phantom_group, in_service, wait_for
from tests.test_service_ec2 import AMI, served  # noqa: F401  (a fixture)

PUBKEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHx5wQe1Vq6bXh0m0d3mJxk6iH0cS3z6m2fXn8V0q4mB test"
SCRIPT = b"#!/bin/sh\necho from-user-data > /root/ran\n"


def terraform_like() -> bytes:
    """What Terraform's cloudinit_config sends by default: a gzip'd multipart."""
    message = MIMEMultipart()
    message.attach(MIMEText("#cloud-config\npackages: [htop]\n", "cloud-config"))
    message.attach(MIMEText(SCRIPT.decode(), "x-shellscript"))
    return gzip.compress(message.as_bytes())


def sent_user_data(cloud, instance_id: str) -> bytes:
    answer = cloud.client().describe_instance_attribute(InstanceId=instance_id,
                                                        Attribute="userData")
    return base64.b64decode(answer["UserData"]["Value"])


def launch(ec2_cloud, ec2_credentials, tmp_path, options: dict, expires: float | None = None):
    cloud = ec2_cloud("ud")
    provider = get_provider(CloudSpec("ud", "ec2", cloud.cloud_options(*ec2_credentials)),
                            tmp_path)
    run = f"r{uuid.uuid4().hex[:6]}"
    request = LaunchRequest(run=run, plan="p", service="vm", cloud="ud", indexes=[0],
                            client_token=uuid.uuid4().hex, tags={"run": run, "service": "vm"},
                            ssh_user="root", ssh_public_key=PUBKEY, hostnames=["vm-0"],
                            image=AMI, options=options, expires=expires)
    (info,) = provider.launch(request, lambda i, inf: None)
    return cloud, info


def test_a_plans_gzip_user_data_reaches_the_instance_byte_for_byte(ec2_cloud, ec2_credentials,
                                                                    tmp_path):
    data = terraform_like()
    (tmp_path / "plan.yml").write_text(textwrap.dedent(f"""\
        clouds: {{aws: {{provider: ec2}}}}
        services:
          vm:
            cloud: aws
            image: {AMI}
            user_data_base64: {base64.b64encode(data).decode()}
    """))
    options = load_plan(tmp_path / "plan.yml").services["vm"].options
    assert options["user_data"] == data
    cloud, info = launch(ec2_cloud, ec2_credentials, tmp_path, options)
    # Not base64 twice (boto3 encodes UserData itself), not decoded, not re-packed.
    assert sent_user_data(cloud, info.instance_id) == data


def test_the_lease_part_follows_a_gzip_multipart_and_keeps_its_parts(ec2_cloud, ec2_credentials,
                                                                     tmp_path):
    data = terraform_like()
    cloud, info = launch(ec2_cloud, ec2_credentials, tmp_path, {"user_data": data},
                         expires=time.time() + 3600)
    sent = userdata.content(sent_user_data(cloud, info.instance_id))
    parts = [p for p in email.message_from_bytes(sent).walk() if not p.is_multipart()]
    types = [p.get_content_type() for p in parts]
    assert types == ["text/cloud-config", "text/x-shellscript", "text/x-shellscript"]
    assert parts[1].get_payload(decode=True) == SCRIPT  # the caller's, exactly
    assert b"cloudinitd lease" in parts[2].get_payload(decode=True)
    assert len(sent_user_data(cloud, info.instance_id)) <= userdata.MAX_BYTES


def test_serve_passes_gzip_user_data_exactly_and_describes_it_as_sent(served):  # noqa: F811
    server, alice, _, clouds, _ = served
    data = gzip.compress(os.urandom(64) + SCRIPT)  # binary inside too: bytes, not text
    alice.create_launch_configuration(LaunchConfigurationName="lc@a", ImageId=AMI,
                                      InstanceType="m1.small", UserData=data)
    (lc,) = alice.describe_launch_configurations()["LaunchConfigurations"]
    assert base64.b64decode(lc["UserData"]) == data  # as sent (boto3 sent its base64)
    create_phantom_group(alice, "gz", "lc", "a:-1", 1)
    wait_for(lambda: len(in_service(alice, "gz")) == 1, why="1 instance in service")
    (instance,) = in_service(alice, "gz")
    assert sent_user_data(clouds["a"], instance["InstanceId"]) == data
    plan = (server.cli.home / "service" / "plans" / "alice.gz.yml").read_text()
    assert base64.b64encode(data).decode() in plan  # kept exactly, in the 0600 plan
    alice.delete_auto_scaling_group(AutoScalingGroupName="gz", ForceDelete=True)
    wait_for(lambda: clouds["a"].live_instances("alice.gz") == [], why="instance gone")
