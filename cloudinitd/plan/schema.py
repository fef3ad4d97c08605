"""The JSON Schema of a plan file, and its errors as PlanError(file, line).

Shape only: types, known keys, name patterns. Meaning (clouds that exist,
scripts that exist, references between services) is checked by the loader
and the graph builder, which know the rest of the plan.
"""

from __future__ import annotations

import difflib
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from cloudinitd import kinds
from cloudinitd.errors import PlanError
from cloudinitd.kinds.base import STRINGS as _STRINGS
from cloudinitd.plan.durations import DURATION_PATTERN
from cloudinitd.plan.model import MAX_PLAN_NAME
from cloudinitd.plan.yamlpos import line_of

IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]*$"
SERVICE_NAME = r"^[A-Za-z][A-Za-z0-9_]*$"
_IDENT_WORDS = "letters, digits and '_', not starting with a digit"

# `x-expect` is ours (validators ignore unknown keywords): the words used in
# a message when a value fails a `oneOf` / `anyOf` / type check.
_DURATION = {
    "x-expect": "a duration (seconds, or e.g. 30s, 20m, 2h)",
    "oneOf": [
        {"type": "number", "exclusiveMinimum": 0},
        {"type": "string", "pattern": DURATION_PATTERN},
    ],
}
_SCRIPT_PATH = {"type": "string", "minLength": 1,
                "x-expect": "a script path (e.g. role/boot.sh.j2)"}
# A step: a script path, or {script, args, files} (arguments are templates,
# files are uploaded beside the script).
_SCRIPT = {
    "x-expect": "a script path, or {script: PATH, args: [...], files: [...]}",
    "oneOf": [
        _SCRIPT_PATH,
        {
            "type": "object",
            "properties": {
                "script": _SCRIPT_PATH,
                "args": {"type": "array", "maxItems": 256,
                         "items": {"type": ["string", "number", "boolean"],
                                   "x-expect": "a string, number or boolean"}},
                "files": {"type": "array", "maxItems": 256,
                          "items": {"type": "string", "minLength": 1,
                                    "x-expect": "a file or folder path"}},
            },
            "required": ["script"],
            "additionalProperties": False,
        },
    ],
}

_COMMON_PROPERTIES: dict[str, Any] = {
    "cloud": {"type": "string", "minLength": 1},
    "clouds": {
        "type": "array",
        "minItems": 1,
        "items": {
            "type": "object",
            "properties": {
                "cloud": {"type": "string", "minLength": 1},
                "max": {"type": "integer", "minimum": -1, "x-expect": "a whole number >= -1"},
            },
            "required": ["cloud"],
            "additionalProperties": False,
        },
    },
    "image": {"type": "string"},
    "size": {"type": "string"},
    "count": {
        "x-expect": "a whole number >= 0 or a template string",
        "oneOf": [{"type": "integer", "minimum": 0}, {"type": "string", "minLength": 1}],
    },
    "after": _STRINGS,
    "host": {"type": "string", "minLength": 1},
    "local": {"type": "boolean", "x-expect": "true or false"},
    # Existing machines, one instance each (plan/inventory.py checks every address).
    "hosts": {
        "x-expect": "a list of addresses (HOST or HOST:PORT), or {file: PATH, group: NAME}",
        "oneOf": [
            {"type": "array", "minItems": 1,
             "items": {"type": "string", "minLength": 1, "x-expect": "an address"}},
            {"type": "object",
             "properties": {"file": {"type": "string", "minLength": 1},
                            "group": {"type": "string", "minLength": 1}},
             "required": ["file"], "additionalProperties": False},
        ],
    },
    "instance_id": {
        "x-expect": "an instance id or a list of them (one per instance)",
        "oneOf": [
            {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"},
            {"type": "array", "minItems": 1, "maxItems": 1000, "items": {
                "type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"}},
        ],
    },
    "terminate_adopted": {"type": "boolean", "x-expect": "true or false"},
    "ssh_user": {"type": "string", "minLength": 1},
    "ssh_key": {"type": "string", "minLength": 1},
    "ssh_port": {"type": "integer", "minimum": 1, "maximum": 65535, "x-expect": "a port number"},
    "boot": _SCRIPT,
    "ready": _SCRIPT,
    "terminate": _SCRIPT,
    "exports": {
        "type": "array",
        "items": {"type": "string", "pattern": IDENTIFIER, "x-expect": "an attribute name"},
    },
    "values": {
        "type": "object",
        "x-expect": "a mapping of names to values (templates) others read like exports",
        "propertyNames": {"type": "string", "pattern": IDENTIFIER, "x-expect": _IDENT_WORDS},
        "additionalProperties": {
            "type": ["string", "number", "boolean"],
            "x-expect": "a string, number or boolean",
        },
    },
    "env": {
        "type": "object",
        "propertyNames": {"type": "string", "pattern": IDENTIFIER, "x-expect": _IDENT_WORDS},
        "additionalProperties": {
            "type": ["string", "number", "boolean"],
            "x-expect": "a string, number or boolean",
        },
    },
    "timeout": _DURATION,
    "lifetime": _DURATION,
    "spot": {
        "type": "object",
        "properties": {
            "max_price": {
                "type": ["number", "string"],
                "x-expect": "a price (number or string)",
            },
            "fallback": {"enum": ["on-demand", "none"]},
        },
        "additionalProperties": False,
    },
    "preserve": {"type": "boolean", "x-expect": "true or false"},
    "autoscale": {
        "type": "object",
        "properties": {
            "min": {"type": "integer", "minimum": 0, "x-expect": "a whole number >= 0"},
            "max": {"type": "integer", "minimum": 0, "x-expect": "a whole number >= 0"},
            "sensor": _SCRIPT,
            "local": {"type": "boolean", "x-expect": "true or false"},
            "thresholds": {
                "type": "object",
                "properties": {
                    "above": {"type": "number", "x-expect": "a number"},
                    "below": {"type": "number", "x-expect": "a number"},
                    "step": {"type": "integer", "minimum": 1, "maximum": 1000,
                             "x-expect": "a whole number from 1 to 1000"},
                },
                "additionalProperties": False,
            },
            "target": {"type": "number", "exclusiveMinimum": 0, "x-expect": "a number > 0"},
            "cooldown": _DURATION,
        },
        "required": ["min", "max", "sensor"],
        "additionalProperties": False,
    },
}


def plan_schema(declared: dict[str, kinds.Declaration]) -> dict[str, Any]:
    """The JSON Schema of a plan whose services may use these kinds' options.

    A service takes the keys every kind understands, then each kind's own
    (kept in ServiceSpec.options for the provider to use), as declared.
    """
    properties = {**_COMMON_PROPERTIES, **kinds.service_options(declared)}
    service = {"type": "object", "properties": properties, "additionalProperties": False}
    schema: dict[str, Any] = {**_PLAN_TOP, "properties": dict(_PLAN_TOP["properties"])}
    schema["properties"]["defaults"] = service
    schema["properties"]["services"] = {**_PLAN_TOP["properties"]["services"],
                                        "additionalProperties": service}
    return schema


_SERVICE = {"type": "object", "properties": _COMMON_PROPERTIES, "additionalProperties": False}

_PLAN_TOP: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "cloudinitd launch plan",
    "type": "object",
    "properties": {
        "name": {
            "type": "string",
            "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
            "maxLength": MAX_PLAN_NAME,
            "x-expect": f"letters, digits, '_', '.', '-' (at most {MAX_PLAN_NAME})",
        },
        "vars": {
            "type": "object",
            "propertyNames": {"type": "string", "pattern": IDENTIFIER, "x-expect": _IDENT_WORDS},
        },
        "clouds": {
            "type": "object",
            "propertyNames": {
                "type": "string",
                "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
                "x-expect": "letters, digits, '_', '.', '-'",
            },
            "additionalProperties": {
                "type": "object",
                "properties": {"provider": {"type": "string", "minLength": 1}},
                "required": ["provider"],
            },
        },
        "defaults": _SERVICE,
        "services": {
            "type": "object",
            "minProperties": 1,
            "propertyNames": {
                "type": "string",
                "pattern": SERVICE_NAME,
                "x-expect": "a letter, then letters, digits or '_'; templates use it as a name",
            },
            "additionalProperties": _SERVICE,
        },
        "lifetime": _DURATION,
        "preserve": {"type": "boolean", "x-expect": "true or false"},
    },
    "required": ["services"],
    "additionalProperties": False,
}

# Plan-level `outputs:` (issue 15): templates rendered with the run's world at the end of
# `boot` and `status` and by `output RUN` (`url: "http://{{ web.address }}"`).
_PLAN_TOP["properties"]["outputs"] = {
    "type": "object",
    "x-expect": "a mapping of names to templates (e.g. url: \"http://{{ web.address }}\")",
    "propertyNames": {"type": "string", "pattern": IDENTIFIER, "x-expect": _IDENT_WORDS},
    "additionalProperties": {"type": ["string", "number", "boolean"],
                             "x-expect": "a string, number or boolean"},
}

# The schema with the built-in kinds (`cloudinitd schema` prints it).
PLAN_SCHEMA = plan_schema(kinds.BUILTIN)
SERVICE_PROPERTIES: dict[str, Any] = PLAN_SCHEMA["properties"]["defaults"]["properties"]
# The built-in kinds' service keys (user_data, ...): they apply to launched services only.
PROVIDER_OPTIONS = tuple(kinds.service_options(kinds.BUILTIN))
_VALIDATOR = Draft202012Validator(PLAN_SCHEMA)
_PLUGGED: tuple[tuple[kinds.Declaration, ...], Draft202012Validator] | None = None


def _validator() -> Draft202012Validator:
    """The built-in validator, or one that also knows the registered kinds' options."""
    global _PLUGGED
    if not kinds.PLUGINS:
        return _VALIDATOR
    key = tuple(kinds.PLUGINS.values())
    if _PLUGGED is None or _PLUGGED[0] != key:
        _PLUGGED = (key, Draft202012Validator(plan_schema(kinds.declared())))
    return _PLUGGED[1]


def _where(path: list[Any]) -> str:
    """`services.head.ssh_port` style name of a place in the plan."""
    text = ""
    for p in path:
        text += f"[{p}]" if isinstance(p, int) else (f".{p}" if text else str(p))
    return text or "plan"


def did_you_mean(word: str, choices: list[str]) -> str:
    """` (did you mean 'x'?)` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _unknown_keys(error: ValidationError, data: Any, file: str) -> list[PlanError]:
    known = sorted(error.schema.get("properties", {}))
    path = list(error.absolute_path)
    out = []
    for key in error.instance:
        if key in known:
            continue
        where = f" in {_where(path)}" if path else ""
        hint = did_you_mean(str(key), known) or f" (known: {', '.join(known)})"
        out.append(
            PlanError(f"unknown key {key!r}{where}{hint}", file, line_of(data, [*path, key]))
        )
    return out


def _is_name_error(error: ValidationError) -> bool:
    """A key of a mapping failed `propertyNames` (error.instance is the key itself)."""
    return "propertyNames" in list(error.relative_schema_path)[:-1]


def _got(error: ValidationError) -> str:
    """`, got VALUE`; nothing inside `clouds:`, whose values may be pasted secrets."""
    path = list(error.absolute_path)
    return "" if path[:1] == ["clouds"] else f", got {error.instance!r}"


# Every name (of a var, service, cloud, env or value) is text; YAML 1.1 makes a plain
# `no:` the boolean false, which would otherwise pass the name pattern (a non-string
# is not matched against `pattern`) and declare a var named False.
_NOT_TEXT = ("YAML reads an unquoted yes, no, on, off or number as a value, not text;"
             " quote the name")


def _message(error: ValidationError) -> str:
    path = list(error.absolute_path)
    what = _where(path)
    if error.validator == "required":
        missing = [k for k in error.validator_value if k not in error.instance]
        where = f" in {what}" if path else ""
        return f"missing key {missing[0]!r}{where}"
    if _is_name_error(error):
        if not isinstance(error.instance, str):  # the key's `type: string` failed
            return f"{what}: bad name {error.instance!r}: {_NOT_TEXT}"
        expect = error.schema.get("x-expect")
        return f"{what}: bad name {error.instance!r}" + (f" (use {expect})" if expect else "")
    if error.validator == "enum":
        allowed = ", ".join(repr(v) for v in error.validator_value)
        return f"{what}: must be one of {allowed}{_got(error)}"
    if error.validator == "minProperties" and error.validator_value == 1:
        return f"{what}: must not be empty"
    expect = error.schema.get("x-expect")
    if expect:
        return f"{what}: expected {expect}{_got(error)}"
    if error.validator == "type":
        return f"{what}: expected {error.validator_value}{_got(error)}"
    return f"{what}: {error.message}"


def _deepest(error: ValidationError) -> ValidationError:
    """For `oneOf` (a string or a list of strings), the failing list item, when there is one.

    `after: [b, 7]` fails as a whole; the useful place is the item `7`, on its own line.
    """
    if error.validator not in ("oneOf", "anyOf") or not error.context:
        return error
    deepest = max(error.context, key=lambda e: len(e.absolute_path))
    if len(deepest.absolute_path) > len(error.absolute_path):
        return deepest
    return error


def validate_plan_data(data: Any, file: str) -> list[PlanError]:
    """Every schema problem of a loaded plan (PosDict tree), sorted by line."""
    if not isinstance(data, dict):
        return [PlanError("a plan must be a mapping with at least a 'services' key", file, 1)]
    errors: list[PlanError] = []
    seen: set[str] = set()
    for error in _validator().iter_errors(data):
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            found = _unknown_keys(error, data, file)
        else:
            error = _deepest(error)
            path = list(error.absolute_path)
            if _is_name_error(error):
                path.append(error.instance)  # point at the badly named key itself
            line = line_of(data, path)
            found = [PlanError(_message(error), file, line)]
        for e in found:
            if str(e) not in seen:
                seen.add(str(e))
                errors.append(e)
    errors.sort(key=lambda e: e.line or 0)
    return errors
