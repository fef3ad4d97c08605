"""YAML with positions, the plan JSON Schema and durations."""

from __future__ import annotations

import pytest
from jsonschema import Draft202012Validator

from cloudinitd.errors import PlanError
from cloudinitd.plan.durations import parse_duration
from cloudinitd.plan.schema import PLAN_SCHEMA, SERVICE_PROPERTIES, validate_plan_data
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
