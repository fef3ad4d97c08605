"""The XML of launch configurations and groups, shaped as AWS answers Describe*."""

from __future__ import annotations

import base64
from xml.etree import ElementTree as ET

from cloudinitd.providers.base import ERROR, PENDING, RUNNING, STOPPING
from cloudinitd.records import Instance
from cloudinitd.service.query import element, timestamp
from cloudinitd.service.state import DELETING, Group, LaunchConfig

# Instance states of the engine -> AWS's lifecycle and health words.
LIFECYCLE = {PENDING: "Pending", RUNNING: "InService", STOPPING: "Terminating",
             ERROR: "InService"}
HEALTH = {PENDING: "Healthy", RUNNING: "Healthy", STOPPING: "Unhealthy", ERROR: "Unhealthy"}


def arn(kind: str, owner: str, path: str) -> str:
    return f"arn:cloudinitd:autoscaling:local:{owner}:{kind}:{path}"


def launch_config_member(parent: ET.Element, lc: LaunchConfig) -> None:
    m = element(parent, "member")
    element(m, "LaunchConfigurationName", lc.full_name)
    element(m, "LaunchConfigurationARN",
            arn("launchConfiguration", lc.owner, f"launchConfigurationName/{lc.full_name}"))
    element(m, "ImageId", lc.image)
    element(m, "InstanceType", lc.size)
    if lc.key_name:
        element(m, "KeyName", lc.key_name)
    element(m, "SecurityGroups")
    # AWS answers UserData as sent (the base64 of its bytes); it is the caller's own.
    element(m, "UserData", base64.b64encode(lc.user_data or b"").decode())
    element(m, "KernelId", "")
    element(m, "RamdiskId", "")
    element(m, "BlockDeviceMappings")
    monitoring = element(m, "InstanceMonitoring")
    element(monitoring, "Enabled", False)
    element(m, "EbsOptimized", False)
    element(m, "CreatedTime", timestamp(lc.created))


def group_member(parent: ET.Element, group: Group, instances: list[Instance]) -> None:
    m = element(parent, "member")
    element(m, "AutoScalingGroupName", group.name)
    element(m, "AutoScalingGroupARN",
            arn("autoScalingGroup", group.owner, f"autoScalingGroupName/{group.name}"))
    element(m, "LaunchConfigurationName", group.launch_config)
    element(m, "MinSize", group.min_size)
    element(m, "MaxSize", group.max_size)
    element(m, "DesiredCapacity", group.desired)
    element(m, "DefaultCooldown", 0)
    zones = element(m, "AvailabilityZones")
    for cloud, _ in group.placements:
        element(zones, "member", cloud)
    element(m, "LoadBalancerNames")
    element(m, "TargetGroupARNs")
    element(m, "HealthCheckType", "EC2")
    element(m, "HealthCheckGracePeriod", 0)
    members = element(m, "Instances")
    for row in instances:
        i = element(members, "member")
        element(i, "InstanceId", row.instance_id)
        if row.extra.get("instance_type"):
            element(i, "InstanceType", row.extra["instance_type"])
        element(i, "AvailabilityZone", row.cloud)
        lifecycle = "Terminating" if group.status == DELETING else LIFECYCLE.get(row.state,
                                                                                 "Pending")
        element(i, "LifecycleState", lifecycle)
        element(i, "HealthStatus", HEALTH.get(row.state, "Unhealthy"))
        element(i, "LaunchConfigurationName", f"{group.launch_config}@{row.cloud}")
        element(i, "ProtectedFromScaleIn", False)
    element(m, "CreatedTime", timestamp(group.created))
    element(m, "SuspendedProcesses")
    element(m, "EnabledMetrics")
    tags = element(m, "Tags")
    for key, value in group.tags.items():
        t = element(tags, "member")
        element(t, "ResourceId", group.name)
        element(t, "ResourceType", "auto-scaling-group")
        element(t, "Key", key)
        element(t, "Value", value)
        element(t, "PropagateAtLaunch", False)
    if group.status == DELETING:
        element(m, "Status", "Delete in progress")
    element(m, "NewInstancesProtectedFromScaleIn", False)
