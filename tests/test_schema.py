"""YAML with positions, the plan JSON Schema and durations."""

from __future__ import annotations

import pytest
from jsonschema import Draft202012Validator

from cloudinitd import kinds
from cloudinitd.errors import PlanError
from cloudinitd.kinds.base import Declaration
from cloudinitd.plan import schema
from cloudinitd.plan.durations import parse_duration
from cloudinitd.plan.schema import (
    PLAN_SCHEMA,
    SERVICE_PROPERTIES,
    plan_schema,
    validate_plan_data,
)
from cloudinitd.plan.yamlpos import PosDict, PosList, line_of, load_yaml


def test_yaml_keeps_lines_of_keys_values_and_items():
    data = load_yaml("a: 1\nb:\n  - x\n  - {y: 2}\nc:\n  deep:\n    key: v\n", "f.yml")
    assert isinstance(data, PosDict) and isinstance(data["b"], PosList)
    assert data.key_lines == {"a": 1, "b": 2, "c": 5}
    assert data["b"].item_lines == [3, 4]
    assert data["c"]["deep"].key_line("key") == 7
    assert line_of(data, ["b", 1, "y"]) == 4
    assert line_of(data, ["c", "deep", "key"]) == 7
    assert line_of(data, ["c", "missing"]) == 5  # nearest known place


def test_yaml_merge_keys_and_anchors():
    data = load_yaml("base: &b {k: v, j: 1}\nd:\n  <<: *b\n  k: w\n", "f.yml")
    assert data["d"] == {"k": "w", "j": 1}


@pytest.mark.parametrize(
    "text, message",
    [
        ("a: b: c\n", "f.yml:1: bad YAML: mapping values are not allowed in this context"),
        ("a: 1\na: 2\n", "f.yml:2: duplicate key 'a' (first at line 1)"),
        (
            "a:\n  - 1\n - 2\n",
            "f.yml:3: bad YAML: did not find expected key (while parsing a block mapping)",
        ),
        (
            "a: [1\n",
            "f.yml:2: bad YAML: did not find expected ',' or ']' (while parsing a flow sequence)",
        ),
    ],
)
def test_bad_yaml_is_one_line_with_file_and_line(text, message):
    with pytest.raises(PlanError) as info:
        load_yaml(text, "f.yml")
    assert str(info.value) == message
    assert "\n" not in str(info.value)


def test_schema_itself_is_valid_json_schema():
    Draft202012Validator.check_schema(PLAN_SCHEMA)
    for key in ("cloud", "clouds", "count", "after", "host", "spot", "user_data", "subnet"):
        assert key in SERVICE_PROPERTIES


def errors_of(text: str) -> list[str]:
    return [str(e) for e in validate_plan_data(load_yaml(text, "p.yml"), "p.yml")]


def test_every_schema_error_is_reported_with_its_line():
    text = """\
name: demo
services:
  bad-name: {}
  a:
    image: 3
    count: 1.5
    after: [1]
    spot: {max_price: 1, fallback: never}
    env: {GOOD: 1, 2BAD: x}
    exports: [ok, not-ok]
  b:
    clouds: []
defaults:
  ssh_user: ""
vars: {x: 1}
"""
    assert errors_of(text) == [
        "p.yml:3: services: bad name 'bad-name' (use a letter, then letters, digits or '_'; templates use it as a name)",
        "p.yml:5: services.a.image: expected string, got 3",
        "p.yml:6: services.a.count: expected a whole number >= 0 or a template string, got 1.5",
        "p.yml:7: services.a.after[0]: expected string, got 1",
        "p.yml:8: services.a.spot.fallback: must be one of 'on-demand', 'none', got 'never'",
        "p.yml:9: services.a.env: bad name '2BAD' (use letters, digits and '_', not starting with a digit)",
        "p.yml:10: services.a.exports[1]: expected an attribute name, got 'not-ok'",
        "p.yml:12: services.b.clouds: [] should be non-empty",
        "p.yml:14: defaults.ssh_user: '' should be non-empty",
    ]


def test_unknown_keys_anywhere_get_did_you_mean():
    text = "servces: {}\nservices:\n  a:\n    imgae: x\n    spot: {max_prize: 1}\ndefaults: {sshuser: x}\n"
    assert errors_of(text) == [
        "p.yml:1: unknown key 'servces' (did you mean 'services'?)",
        "p.yml:4: unknown key 'imgae' in services.a (did you mean 'image'?)",
        "p.yml:5: unknown key 'max_prize' in services.a.spot (did you mean 'max_price'?)",
        "p.yml:6: unknown key 'sshuser' in defaults (did you mean 'ssh_user'?)",
    ]


def test_unknown_key_without_close_match_lists_the_known_ones():
    [error] = errors_of("services: {a: {zzz: 1}}\n")
    assert error.startswith("p.yml:1: unknown key 'zzz' in services.a (known: after, autoscale, boot, cloud,")


def test_missing_services_and_cloud_without_provider():
    assert errors_of("clouds: {c: {region: x}}\n") == [
        "p.yml:1: missing key 'provider' in clouds.c",
        "p.yml:1: missing key 'services'",
    ]


def test_cloud_entries_take_free_provider_options():
    assert (
        errors_of("clouds: {c: {provider: ec2, region: r, anything: [1, 2]}}\nservices: {a: {}}\n")
        == []
    )


@pytest.mark.parametrize(
    "value, seconds",
    [
        (30, 30.0),
        (1.5, 1.5),
        ("30s", 30.0),
        ("20m", 1200.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("1h30m", 5400.0),
        ("45", 45.0),
    ],
)
def test_durations(value, seconds):
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["abc", "10x", "0", "-5", "h", "1h x", True, None, [1]])
def test_bad_durations(value):
    with pytest.raises(ValueError):
        parse_duration(value)


# -- the schema assembled with a registered kind's options --------------------

PLUGIN = Declaration(
    kind="schematest",
    doc="a plug-in kind, for the schema tests",
    service_options={
        "flavours": {"x-expect": "a flavour or a list of them",
                     "oneOf": [{"type": "string"},
                               {"type": "array", "items": {"type": "string"}}]},
        # anyOf, and a oneOf whose branches overlap ("x" is both): a plug-in may write either.
        "zones": {"x-expect": "a zone or a list of them",
                  "anyOf": [{"type": "string"},
                            {"type": "array", "items": {"type": "string"}}]},
        "tier": {"x-expect": "a tier name", "oneOf": [{"type": "string"}, {"minLength": 1}]},
        # The same condition twice (a plug-in may be redundant): one error, not two.
        "mode": {"allOf": [{"type": "string", "x-expect": "a mode"},
                           {"type": "string", "x-expect": "a mode"}]},
        # A mapping whose key pattern carries no `x-expect`.
        "labels": {"type": "object", "propertyNames": {"pattern": "^[a-z]+$"}},
    },
)


@pytest.fixture
def plugged():
    kinds.register(PLUGIN)
    yield PLUGIN
    kinds.unregister(PLUGIN.kind)


def test_a_registered_kind_s_options_are_valid_in_services_and_defaults(plugged):
    assert errors_of("defaults: {flavours: big, zones: [n]}\n"
                     "services:\n  a: {flavours: [big, small], zones: s, labels: {ab: x}}\n"
                     "  b: {}\n") == []


def test_with_a_registered_kind_unknown_keys_and_shapes_are_still_refused(plugged):
    text = """\
defaults: {imag: x}
services:
  a:
    flavour: big
    flavours: 5
  b: 5
  c:
    zones: [n,
      7]
    labels: {Ab: x}
    tier: x
    mode: 5
"""
    assert errors_of(text) == [
        "p.yml:1: unknown key 'imag' in defaults (did you mean 'image'?)",
        "p.yml:4: unknown key 'flavour' in services.a (did you mean 'flavours'?)",
        "p.yml:5: services.a.flavours: expected a flavour or a list of them, got 5",
        "p.yml:6: services.b: expected object, got 5",
        "p.yml:9: services.c.zones[1]: expected string, got 7",
        "p.yml:10: services.c.labels: bad name 'Ab'",
        "p.yml:11: services.c.tier: expected a tier name, got 'x'",
        "p.yml:12: services.c.mode: expected a mode, got 5",
    ]
    assert errors_of("services: {}\n") == ["p.yml:1: services: must not be empty"]


def test_the_schema_for_the_built_in_kinds_is_the_one_printed(plugged):
    # `cloudinitd schema` prints PLAN_SCHEMA; assembling another must not change the parts
    # they share, nor add keys a JSON Schema reader would not know.
    with_plugin = plan_schema(kinds.declared())
    assert set(with_plugin) == set(PLAN_SCHEMA)
    assert set(with_plugin["properties"]) == set(PLAN_SCHEMA["properties"])
    assert "flavours" in with_plugin["properties"]["services"]["additionalProperties"]["properties"]
    assert plan_schema(kinds.BUILTIN) == PLAN_SCHEMA
    assert "flavours" not in SERVICE_PROPERTIES


@pytest.mark.parametrize(("text", "expected"), [
    ("services: {}\n", ["p.yml:1: services: must not be empty"]),
    ("clouds: {c: {provider: 5}}\nservices: {a: {}}\n",
     ["p.yml:1: clouds.c.provider: expected string"]),
    ("clouds: {c: {provider: ec2, region: 5}}\nservices: {a: {}}\n", []),
    ("services: {a: {count: -1}}\n",
     ["p.yml:1: services.a.count: expected a whole number >= 0 or a template string, got -1"]),
    ("services: {a: {clouds: [{cloud: c, max: -2}]}}\n",
     ["p.yml:1: services.a.clouds[0].max: expected a whole number >= -1, got -2"]),
    ("services:\n  a:\n    after: [b,\n      7]\n",
     ["p.yml:4: services.a.after[1]: expected string, got 7"]),
    ("services:\n  a:\n    boot: {script: b.sh, args: [x, [1]]}\n",
     ["p.yml:3: services.a.boot.args[1]: expected a string, number or boolean, got [1]"]),
    ("services: {a: {lifetime: 0}}\n",
     ["p.yml:1: services.a.lifetime: expected a duration (seconds, or e.g. 30s, 20m, 2h),"
      " got 0"]),
    ("vars: {1x: 2}\nservices: {a: {}}\n",
     ["p.yml:1: vars: bad name '1x' (use letters, digits and '_', not starting with a digit)"]),
    ("services: {a: {ssh_port: 0}}\n", ["p.yml:1: services.a.ssh_port: expected a port number,"
                                        " got 0"]),
    ("services: {a: {image: [1]}}\n", ["p.yml:1: services.a.image: expected string, got [1]"]),
    ("services: {a: {host: ''}}\n", ["p.yml:1: services.a.host: '' should be non-empty"]),
])
def test_schema_messages(text, expected):
    assert errors_of(text) == expected


UNQUOTED = ("YAML reads an unquoted yes, no, on, off or number as a value, not text;"
            " quote the name")


@pytest.mark.parametrize(("text", "expected"), [
    ("vars: {no: 1}\nservices: {a: {}}\n", [f"p.yml:1: vars: bad name False: {UNQUOTED}"]),
    ("services: {a: {}}\noutputs:\n  yes: x\n", [f"p.yml:3: outputs: bad name True: {UNQUOTED}"]),
    ("services:\n  a:\n    env: {on: 1}\n", [f"p.yml:3: services.a.env: bad name True: {UNQUOTED}"]),
    ("services:\n  a:\n    values:\n      7: x\n",
     [f"p.yml:4: services.a.values: bad name 7: {UNQUOTED}"]),
    ("clouds:\n  off: {provider: ec2}\nservices: {a: {}}\n",
     [f"p.yml:2: clouds: bad name False: {UNQUOTED}"]),
    ("services:\n  1: {}\n", [f"p.yml:2: services: bad name 1: {UNQUOTED}"]),
    ("services:\n  a:\n    env: {'on': 1}\nvars: {'no': 1}\noutputs: {'yes': x}\n", []),
])
def test_names_yaml_reads_as_values_are_refused(text, expected):
    # Without the check, `vars: {no: 1}` declared a var named False and `env: {on: 1}`
    # an environment variable named True.
    assert errors_of(text) == expected


def test_the_plugged_validator_is_built_once_per_set_of_kinds(plugged, monkeypatch):
    monkeypatch.setattr(schema, "_PLUGGED", None)  # as in a fresh process
    first = schema._validator()
    assert first is schema._validator()
    assert errors_of("services: {a: {flavours: big}}\n") == []
    kinds.unregister(PLUGIN.kind)  # other kinds may stay registered (the `memory` double)
    assert schema._validator() is not first
    kinds.register(PLUGIN)
