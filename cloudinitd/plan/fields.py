"""Small pure helpers on plan values, used by the loader.

Kept apart so the loader reads as the order of checks it makes.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from jinja2 import nodes

from cloudinitd.plan.model import MAX_PLAN_NAME
from cloudinitd.plan.yamlpos import PosDict
from cloudinitd.templates import CONTEXT_NAMES, RAW_ENV

__all__ = ["empty_sections", "plain", "usable_as_name", "parse_override", "safe_plan_name"]


def plain(value: Any) -> Any:
    """PosDict / PosList trees back to plain dicts and lists."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def parse_override(text: str) -> Any:
    """A `--var` value: a YAML scalar (`4` is an int, `true` a bool), else the text itself."""
    if text == "":
        return ""
    try:
        value = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError):  # PyYAML composes nesting recursively
        return text
    return value if isinstance(value, str | int | float | bool) else text


def usable_as_name(name: str) -> bool:
    """True when a template can write `{{ name.x }}` and mean this service."""
    if name in CONTEXT_NAMES or name in RAW_ENV.globals or name in {"loop", "caller"}:
        return False
    try:
        tree = RAW_ENV.parse(f"{{{{ {name}.x }}}}")
    except Exception:
        return False
    found = list(tree.find_all(nodes.Name))
    return len(found) == 1 and found[0].name == name


def empty_sections(data: Any) -> None:
    """`services: {a: }` or a bare `vars:` mean empty: make them empty mappings."""
    if not isinstance(data, PosDict):
        return
    for key in ("vars", "clouds", "defaults", "services"):
        if key in data and data[key] is None:
            data[key] = PosDict(line=data.key_line(key))
    services = data.get("services")
    if isinstance(services, PosDict):
        for name, entry in services.items():
            if entry is None:
                services[name] = PosDict(line=services.key_line(name))


def safe_plan_name(stem: str) -> str:
    """A file or folder name made fit for run names (`my plan` -> `my-plan`)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).lstrip("._-")[:MAX_PLAN_NAME]
    return cleaned or "plan"
