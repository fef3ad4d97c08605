"""EC2's shapes to and from ours: RunInstances' parameters from a launch request,
an InstanceInfo from an instance's description. Pure (no cloud call): split
from provider.py, which makes the calls.
"""

from __future__ import annotations

from typing import Any

from cloudinitd.providers.base import (
    ERROR,
    PENDING,
    RUNNING,
    STOPPING,
    TERMINATED,
    InstanceInfo,
    LaunchRequest,
)
from cloudinitd.providers.ec2.options import Ec2Options
from cloudinitd.providers.ec2.tags import TAG_PREFIX, index_from_tags, launch_tags
from cloudinitd.providers.ec2.userdata import with_shutdown

STATES = {
    "pending": PENDING,
    "running": RUNNING,
    "stopping": STOPPING,
    "stopped": STOPPING,
    "shutting-down": STOPPING,
    "terminated": TERMINATED,
}


def instance_info(inst: dict, address_from: str | None, index: int | None = None) -> InstanceInfo:
    """Ours from EC2's description of an instance; `address_from` is the cloud's `address:`
    (public, private, or None: the public one when there is one)."""
    tags = {t["Key"]: t["Value"] for t in inst.get("Tags", [])}
    public, private = inst.get("PublicIpAddress"), inst.get("PrivateIpAddress")
    if address_from == "private":
        address = private
    elif address_from == "public":
        address = public
    else:
        address = public or private
    if index is None:
        index = index_from_tags(inst, tags)
    extra = {
        "instance_type": inst.get("InstanceType"),
        "lifecycle": inst.get("InstanceLifecycle") or "on-demand",
        "ec2_state": inst.get("State", {}).get("Name"),
    }
    zone = inst.get("Placement", {}).get("AvailabilityZone")
    if zone:
        extra["availability_zone"] = zone
    return InstanceInfo(
        instance_id=inst["InstanceId"],
        state=STATES.get(inst.get("State", {}).get("Name", ""), ERROR),
        address=address,
        private_address=private,
        hostname=inst.get("PrivateDnsName") or inst.get("PublicDnsName") or None,
        index=index,
        service=tags.get(TAG_PREFIX + "service"),
        extra=extra,
    )


def run_params(request: LaunchRequest, opts: Ec2Options, image_id: str, instance_type: str,
               key_name: str | None) -> dict[str, Any]:
    """RunInstances' parameters for `request` (the image, type and key pair already chosen)."""
    tags = launch_tags(request)
    params: dict[str, Any] = {
        "ImageId": image_id,
        "InstanceType": instance_type,
        "MinCount": 1,
        "MaxCount": len(request.indexes),
        "ClientToken": request.client_token,
        "TagSpecifications": [
            {
                "ResourceType": "instance",
                "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
            }
        ],
    }
    if key_name:
        params["KeyName"] = key_name
    groups = request.options.get("security_groups") or opts.security_groups
    if isinstance(groups, str):
        groups = [groups]
    ids = [g for g in groups if g.startswith("sg-")]
    names = [g for g in groups if not g.startswith("sg-")]
    if ids:
        params["SecurityGroupIds"] = ids
    if names:
        params["SecurityGroups"] = names
    subnet = request.options.get("subnet") or opts.subnet
    if subnet:
        params["SubnetId"] = subnet
    # Bytes (the loader decodes `user_data` / `user_data_base64`), passed as they are.
    user_data = request.options.get("user_data") or opts.user_data
    if isinstance(user_data, str):  # a request made by hand (API callers, old records)
        user_data = user_data.encode()
    if request.expires is not None:
        # The lease holds while no controller runs: the instance powers itself off
        # at the lease end, and a shutdown from inside terminates it.
        params["InstanceInitiatedShutdownBehavior"] = "terminate"
        user_data = with_shutdown(user_data, request.expires)
    if user_data:
        params["UserData"] = user_data
    return params
