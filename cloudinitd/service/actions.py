"""The Auto Scaling actions: parse, check, record, answer. The engine work itself
(launching, replacing, terminating) is the reconcile loop's (`reconcile.py`).

Every action sees only the calling user's launch configurations and groups:
someone else's group answers exactly as a missing one.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree as ET

from cloudinitd import kinds
from cloudinitd.catalog import load_catalog
from cloudinitd.cloudspec import CLOUD_NAME
from cloudinitd.errors import RunNotFound
from cloudinitd.names import MAX_RUN_NAME, RUN_NAME
from cloudinitd.plan import userdata
from cloudinitd.plan.limits import Limits
from cloudinitd.plan.model import CloudSpec
from cloudinitd.providers.base import TERMINATED
from cloudinitd.service import groups, query, xmlout
from cloudinitd.service.query import ApiError, element, validation
from cloudinitd.service.state import ACTIVE, Group, LaunchConfig, ServiceState, now
from cloudinitd.store import Store

LC_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
TEXT = re.compile(r"[^\x00-\x1f\x7f]{1,255}")
SIZE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MAX_LAUNCH_CONFIGS = 200  # per user
MAX_GROUPS = 50  # per user
MAX_CLOUDS = 10  # in one group's `clouds` tag
MAX_USER_DATA = userdata.MAX_BYTES  # bytes, as AWS
PHANTOM_KEYS = ("PHANTOM_DEFINITION", "PHANTOM_DEFINTION")  # seed 001 spells it so
PHANTOM_POLICY = "error_overflow_n_preserving"


def not_found(name: str) -> ApiError:
    return validation(f"AutoScalingGroup name not found - AutoScalingGroup '{name}' not found")


@dataclass
class Api:
    home: Path
    store: Store
    state: ServiceState
    limits: Limits = field(default_factory=Limits.from_env)
    wake: Callable[[str | None], None] = lambda run=None: None
    # Creating and deleting check-then-write across two databases: one at a time.
    lock: threading.Lock = field(default_factory=threading.Lock)

    def capacity(self, params: dict[str, str], name: str,
                 default: int | None = None) -> int | None:
        return query.integer(params, name, 0, self.limits.per_service, default)


def _split_lc(text: str, need_cloud: bool) -> tuple[str, str]:
    name, _, cloud = text.partition("@")
    if not LC_NAME.fullmatch(name) or (need_cloud and not cloud):
        raise validation("LaunchConfigurationName must be NAME@CLOUD: NAME of letters, digits,"
                         " '.', '_' or '-' (at most 100), CLOUD a cloud of this service")
    if cloud and not CLOUD_NAME.fullmatch(cloud):
        raise validation("the cloud after '@' is not a cloud name")
    return name, cloud


def _catalog_cloud(api: Api, cloud: str) -> CloudSpec:
    spec = load_catalog(api.home).get(cloud)
    if spec is None:
        raise validation(f"no cloud named {cloud!r} in this service's catalog")
    if spec.provider == kinds.HOSTS:  # existing hosts: nothing to launch or replace
        raise validation(f"cloud {cloud!r} holds existing hosts, not instances to launch")
    return spec


def _first_boot(spec: CloudSpec, key_name: str | None, user_data: bytes | None) -> None:
    """KeyName and UserData mean what they mean on EC2, or are refused: the same rules as
    a plan's `key_name` / `user_data` (plan/services.py `first_boot`)."""
    kind = kinds.declared().get(spec.provider)
    if kind is None:
        return  # a kind that declares nothing (a plug-in) takes them as given
    where = f"cloud {spec.name!r} ({kind.kind})"
    if key_name and not kind.key_pairs:
        raise validation(f"KeyName: {where} has no key pairs; its instances take the"
                         " group's own key (leave KeyName out)")
    problem = userdata.problem(user_data, kind.user_data) if user_data is not None else None
    if problem:
        raise validation(f"UserData on {where} {problem}")


def _check_user_total(api: Api, user: str, group: str, desired: int) -> None:
    """All of a user's groups together stay within the per-run instance limit."""
    total = desired + sum(g.desired for g in api.state.groups(user) if g.name != group)
    if total > api.limits.per_run:
        raise ApiError("LimitExceeded", f"a user's groups hold at most {api.limits.per_run}"
                       f" instances together ({total} asked)")


def _text(params: dict[str, str], name: str, pattern: re.Pattern, need: bool) -> str | None:
    value = query.required(params, name) if need else params.get(name) or None
    if value is not None and not pattern.fullmatch(value):
        raise validation(f"{name} has characters or a length this service does not take")
    return value


def create_launch_configuration(api: Api, user: str, p: dict[str, str]) -> None:
    name, cloud = _split_lc(query.required(p, "LaunchConfigurationName"), need_cloud=True)
    spec = _catalog_cloud(api, cloud)
    given = p.get("UserData")
    user_data = query.decode_user_data(given, MAX_USER_DATA) if given else None
    key_name = _text(p, "KeyName", TEXT, False)
    _first_boot(spec, key_name, user_data)
    lc = LaunchConfig(owner=user, name=name, cloud=cloud,
                      image=_text(p, "ImageId", TEXT, True) or "",
                      size=_text(p, "InstanceType", SIZE, True) or "",
                      key_name=key_name, user_data=user_data, created=now())
    with api.lock:
        if api.state.count_launch_configs(user) >= MAX_LAUNCH_CONFIGS:
            raise ApiError("LimitExceeded", f"at most {MAX_LAUNCH_CONFIGS} launch"
                           " configurations per user")
        if not api.state.add_launch_config(lc):
            raise ApiError("AlreadyExists", "Launch Configuration by this name already exists"
                           f" - A launch configuration already exists with the name"
                           f" {lc.full_name}")


def delete_launch_configuration(api: Api, user: str, p: dict[str, str]) -> None:
    name, cloud = _split_lc(query.required(p, "LaunchConfigurationName"), need_cloud=True)
    with api.lock:
        for group in api.state.groups(user):
            if group.launch_config == name and any(c == cloud for c, _ in group.placements):
                raise ApiError("ResourceInUse", f"Cannot delete launch configuration"
                               f" {name}@{cloud} because it is attached to AutoScalingGroup"
                               f" {group.name}")
        if not api.state.delete_launch_config(user, name, cloud):
            raise validation(f"Launch configuration name not found - {name}@{cloud}")


def _page(p: dict[str, str], names: list[str], wanted: list[str]) -> tuple[list[str], str | None]:
    """Names to show (filtered, sorted) and the NextToken for the rest."""
    chosen = sorted(n for n in names if not wanted or n in wanted)
    limit = query.integer(p, "MaxRecords", 1, 100, 50) or 50
    token = p.get("NextToken")
    if token:
        if len(token) > 300:
            raise validation("NextToken is not one this service gave")
        chosen = [n for n in chosen if n >= token]
    if len(chosen) > limit:
        return chosen[:limit], chosen[limit]
    return chosen, None


def _paged(p: dict[str, str], names: list[str], asked: str, result_tag: str,
           list_tag: str) -> tuple[ET.Element, ET.Element, list[str]]:
    """A Describe* answer: the result, its list element to fill with the names shown, and
    its NextToken (after the list) when more remain."""
    shown, token = _page(p, names, query.members(p, asked))
    result = ET.Element(result_tag)
    out = element(result, list_tag)
    if token:
        element(result, "NextToken", token)
    return result, out, shown


def describe_launch_configurations(api: Api, user: str, p: dict[str, str]) -> ET.Element:
    by_name = {lc.full_name: lc for lc in api.state.launch_configs(user)}
    result, out, shown = _paged(p, list(by_name), "LaunchConfigurationNames",
                                "DescribeLaunchConfigurationsResult", "LaunchConfigurations")
    for name in shown:
        xmlout.launch_config_member(out, by_name[name])
    return result


def _group_name(owner: str, p: dict[str, str]) -> str:
    name = query.required(p, "AutoScalingGroupName")
    # The group's run is OWNER.NAME (plus -N if taken): it must pass the run-name rule.
    room = MAX_RUN_NAME - len(owner) - 1 - 6
    if not RUN_NAME.fullmatch(name) or len(name) > room:
        raise validation("AutoScalingGroupName must be a letter or digit, then letters, digits,"
                         f" '.', '_' or '-', at most {room} characters")
    return name


def _parse_clouds(text: str) -> list[tuple[str, int]]:
    """Phantom's `clouds` tag: `NAME:MAX,...` in overflow order; MAX -1 means no limit."""
    placements: list[tuple[str, int]] = []
    for item in text.split(","):
        cloud, sep, limit = item.strip().rpartition(":")
        if not sep or not CLOUD_NAME.fullmatch(cloud) or not re.fullmatch(r"-1|\d{1,6}", limit):
            raise validation("the clouds tag is NAME:MAX,... (MAX a whole number, -1 for no"
                             " limit)")
        if any(c == cloud for c, _ in placements):
            raise validation(f"the clouds tag names {cloud!r} twice")
        placements.append((cloud, int(limit)))
    if len(placements) > MAX_CLOUDS:
        raise validation(f"the clouds tag names at most {MAX_CLOUDS} clouds")
    return placements


def _phantom_capacity(api: Api, tags: dict[str, str], p: dict[str, str]) -> int:
    for key in ("n_preserve", "minimum_vms"):
        if key in tags:
            value = query.integer({key: tags[key]}, key, 0, api.limits.per_service)
            return int(value or 0)
    return int(api.capacity(p, "DesiredCapacity", api.capacity(p, "MinSize")) or 0)


def create_auto_scaling_group(api: Api, user: str, p: dict[str, str]) -> None:
    name = _group_name(user, p)
    lc_name, site = _split_lc(query.required(p, "LaunchConfigurationName"), need_cloud=False)
    min_size = api.capacity(p, "MinSize")
    max_size = api.capacity(p, "MaxSize")
    if min_size is None or max_size is None:
        raise ApiError("MissingParameter", "The request must contain MinSize and MaxSize")
    tags = query.tags(p)
    definition = next((tags[k] for k in PHANTOM_KEYS if k in tags), None)
    lcs = {lc.cloud: lc for lc in api.state.launch_configs(user, lc_name)}
    if definition is not None:
        if definition != PHANTOM_POLICY:
            raise validation(f"PHANTOM_DEFINITION must be {PHANTOM_POLICY}")
        if "clouds" not in tags:
            raise validation("a Phantom group needs the clouds tag (NAME:MAX,...)")
        placements = _parse_clouds(tags["clouds"])
        desired = _phantom_capacity(api, tags, p)
        min_size = max_size = desired  # as Phantom reported: n preserved, no range
    else:
        cloud = site or (next(iter(lcs)) if len(lcs) == 1 else None)
        if cloud is None:
            raise validation(f"launch configuration {lc_name!r} has {len(lcs)} clouds: name one"
                             " (NAME@CLOUD) or give Phantom's tags")
        placements = [(cloud, -1)]
        desired = api.capacity(p, "DesiredCapacity", min_size)
        if not min_size <= (desired or 0) <= max_size:
            raise validation(f"Desired capacity:{desired} must be between the specified min"
                             f" size:{min_size} and max size:{max_size}")
    catalog = load_catalog(api.home)
    for cloud, _ in placements:
        if cloud not in lcs:
            raise validation(f"no launch configuration {lc_name}@{cloud}")
        _catalog_cloud(api, cloud)
    document = groups.plan_document(placements, lcs, catalog, int(desired or 0))
    with api.lock:
        if api.state.group(user, name) is not None:
            raise ApiError("AlreadyExists", "AutoScalingGroup by this name already exists - A"
                           f" group with the name {name} already exists")
        if api.state.count_groups(user) >= MAX_GROUPS:
            raise ApiError("LimitExceeded", f"at most {MAX_GROUPS} groups per user")
        _check_user_total(api, user, name, int(desired or 0))
        run = f"{user}.{name}"
        if any(r.name == run for r in api.store.runs()):
            run = api.store.unique_run_name(run)
        groups.create_run(api.home, api.store, run, document)
        api.state.add_group(Group(owner=user, name=name, run=run, launch_config=lc_name,
                                  placements=placements, min_size=min_size, max_size=max_size,
                                  desired=int(desired or 0), tags=tags,
                                  phantom=definition is not None, status=ACTIVE,
                                  created=now()))
    api.wake(run)


def _own_group(api: Api, user: str, p: dict[str, str]) -> Group:
    name = query.required(p, "AutoScalingGroupName")
    group = api.state.group(user, name) if RUN_NAME.fullmatch(name) else None
    if group is None:
        raise not_found(name if RUN_NAME.fullmatch(name) else "(not a group name)")
    return group


def delete_auto_scaling_group(api: Api, user: str, p: dict[str, str]) -> None:
    """Phantom terminated a group's instances whatever ForceDelete said; so does this."""
    query.boolean(p, "ForceDelete")
    with api.lock:
        group = _own_group(api, user, p)
        api.state.mark_deleting(user, group.name)
    api.wake(group.run)


def set_desired_capacity(api: Api, user: str, p: dict[str, str]) -> None:
    query.boolean(p, "HonorCooldown")  # no cooldown here: checked and ignored
    desired = api.capacity(p, "DesiredCapacity")
    if desired is None:
        raise ApiError("MissingParameter", "The request must contain DesiredCapacity")
    with api.lock:
        group = _own_group(api, user, p)
        if group.status != ACTIVE:
            raise ApiError("ScalingActivityInProgress", f"group {group.name} is being deleted")
        low, high = group.min_size, group.max_size
        if group.phantom:
            low = high = desired  # Phantom: the new n is preserved, min = max = n
        elif desired > high:
            raise validation(f"New SetDesiredCapacity value {desired} is above max value"
                             f" {high} for the AutoScalingGroup.")
        elif desired < low:
            raise validation(f"New SetDesiredCapacity value {desired} is below min value"
                             f" {low} for the AutoScalingGroup.")
        _check_user_total(api, user, group.name, desired)
        api.state.set_capacity(user, group.name, desired, low, high)
    api.wake(group.run)


def describe_auto_scaling_groups(api: Api, user: str, p: dict[str, str]) -> ET.Element:
    by_name = {g.name: g for g in api.state.groups(user)}
    result, out, shown = _paged(p, list(by_name), "AutoScalingGroupNames",
                                "DescribeAutoScalingGroupsResult", "AutoScalingGroups")
    for name in shown:
        group = by_name[name]
        try:
            rows = api.store.instances(group.run, groups.SERVICE, live_only=False)
        except RunNotFound:
            rows = []
        xmlout.group_member(out, group, [r for r in rows if r.state != TERMINATED])
    return result


ACTIONS: dict[str, Callable[[Api, str, dict[str, str]], ET.Element | None]] = {
    "CreateLaunchConfiguration": create_launch_configuration,
    "DeleteLaunchConfiguration": delete_launch_configuration,
    "DescribeLaunchConfigurations": describe_launch_configurations,
    "CreateAutoScalingGroup": create_auto_scaling_group,
    "DeleteAutoScalingGroup": delete_auto_scaling_group,
    "DescribeAutoScalingGroups": describe_auto_scaling_groups,
    "SetDesiredCapacity": set_desired_capacity,
}
