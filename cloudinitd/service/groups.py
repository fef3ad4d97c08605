"""A group is a run: the plan written for it, and the engine calls that start and end it.

A group's plan has one service (`vm`) whose overflow list is the group's
clouds in order, each with its max (Phantom's `clouds=NAME:MAX,...`), and
whose count is the desired capacity. Each cloud's launch configuration
(`NAME@CLOUD`) gives that cloud's image, instance type and key pair; an ec2
cloud maps the service's image and size to its own through its `images` and
`instance_types` options. Phantom kept one UserData per group, and so does
this: the launch configurations of a group must agree on it. It is written
as `user_data_base64` (any bytes, exactly as sent).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml

from cloudinitd import kinds
from cloudinitd.catalog import load_catalog
from cloudinitd.engine.boot import start_run
from cloudinitd.errors import PlanError, PlanErrors
from cloudinitd.host.files import write_private
from cloudinitd.plan import userdata
from cloudinitd.plan.loader import load_plan
from cloudinitd.plan.model import CloudSpec
from cloudinitd.service.query import validation
from cloudinitd.service.state import LaunchConfig
from cloudinitd.store import Store

PLAN_NAME = "asg"
SERVICE = "vm"
PLANS_DIR = "service/plans"


def plan_document(placements: list[tuple[str, int]], lcs: dict[str, LaunchConfig],
                  catalog: dict[str, CloudSpec], desired: int) -> dict[str, Any]:
    """The plan of a group, as data (pure: checked and written by `create_run`)."""
    first = lcs[placements[0][0]]
    clouds: dict[str, dict[str, Any]] = {}
    for cloud, _ in placements:
        spec, lc = catalog[cloud], lcs[cloud]
        # A plain copy: the catalog's mappings carry line numbers the YAML writer cannot.
        entry = {"provider": spec.provider, **json.loads(json.dumps(spec.options))}
        kind = kinds.declared().get(spec.provider)
        if kind is not None and kind.image_map and kind.size_map:
            # The cloud maps the plan's image and size names to its own.
            if lc.image != first.image:
                entry[kind.image_map] = {**entry.get(kind.image_map, {}), first.image: lc.image}
            if lc.size != first.size:
                entry[kind.size_map] = {**entry.get(kind.size_map, {}), first.size: lc.size}
            if lc.key_name and "key_name" in kind.cloud_options:
                entry["key_name"] = lc.key_name
        elif (lc.image, lc.size) != (first.image, first.size):
            raise validation(f"launch configuration {lc.full_name}: a {spec.provider} cloud"
                             " takes the ImageId and InstanceType of the group's first cloud"
                             f" ({first.full_name})")
        clouds[cloud] = entry
    if len({lc.user_data or b"" for lc in lcs.values()}) > 1:
        raise validation("the launch configurations of a group share one UserData"
                         " (as Phantom's did): give them all the same")
    service: dict[str, Any] = {"image": first.image, "size": first.size, "count": desired,
                               "clouds": [{"cloud": c, "max": m} for c, m in placements]}
    if first.user_data:
        # Base64 whatever the bytes (gzip or text): the plan, a YAML text, keeps them exactly.
        service["user_data_base64"] = userdata.to_base64(first.user_data)
    return {"name": PLAN_NAME, "clouds": clouds, "services": {SERVICE: service}}


def plan_path(home: Path, run: str) -> Path:
    return Path(home) / PLANS_DIR / f"{run}.yml"


def write_plan(home: Path, run: str, document: dict[str, Any]) -> Path:
    """0600 in a 0700 folder: UserData is the caller's and may be private."""
    path = plan_path(home, run)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    write_private(path, "# Written by `cloudinitd serve` for an Auto Scaling group; do not edit.\n"
                  + yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
    return path


def create_run(home: Path, store: Store, run: str, document: dict[str, Any]) -> None:
    """Write and load the group's plan, then record its run (nothing is launched here:
    the reconcile loop converges it)."""
    path = write_plan(home, run, document)
    try:
        plan = load_plan(path, overrides={}, catalog=load_catalog(home))
    except (PlanError, PlanErrors) as exc:
        path.unlink(missing_ok=True)
        problems = exc.errors if isinstance(exc, PlanErrors) else [exc]
        # The message without the file's place: the caller never sees server paths.
        raise validation("the group was refused: " + "; ".join(
            getattr(p, "message", str(p)) for p in problems[:3])) from None
    start_run(home, store, plan, {}, run)
