"""cloudinitd/plan/fields.py and plan/limits.py: small field readers of the loader (pure,
in-process; in the mutation test selection)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloudinitd.errors import PlanError, UsageError
from cloudinitd.plan import limits
from cloudinitd.plan.fields import (
    empty_sections,
    parse_override,
    plain,
    safe_plan_name,
    usable_as_name,
)
from cloudinitd.plan.limits import FileRefused, Limits, read_text
from cloudinitd.plan.yamlpos import PosDict, PosList, load_yaml
from tests.support.hostile import within


def test_plain_turns_positioned_trees_into_plain_ones():
    data = load_yaml("a: [1, {b: [x]}]\nc: {d: 2}\ne: s\n", "f.yml")
    out = plain(data)
    assert out == {"a": [1, {"b": ["x"]}], "c": {"d": 2}, "e": "s"}
    assert type(out) is dict and type(out["a"]) is list and type(out["a"][1]) is dict
    assert type(out["a"][1]["b"]) is list and type(out["c"]) is dict
    assert plain(3) == 3 and plain(None) is None


@pytest.mark.parametrize(("text", "value"), [
    ("4", 4), ("-2", -2), ("2.5", 2.5), ("true", True), ("no", False), ("abc", "abc"),
    ("", ""), ("[1, 2]", "[1, 2]"), ("a: b", "a: b"), ("'quoted'", "quoted"),
    ("null", "null"), ("~", "~"), ("{a", "{a"), ("a: b: c", "a: b: c"), ("2001-01-01", "2001-01-01"),
    # Nesting deeper than PyYAML's recursive composer goes: RecursionError, not YAMLError
    ("[" * 5000, "[" * 5000), ("{a: " * 3000, "{a: " * 3000),
])
def test_var_overrides_are_yaml_scalars_or_the_text(text, value):
    got = parse_override(text)
    assert got == value and type(got) is type(value)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.text(max_size=40))
def test_any_var_override_is_a_scalar_or_the_text(text):
    """Whatever is typed after `--var NAME=`: a value, never an exception."""
    got = parse_override(text)
    assert type(got) in (str, int, float, bool)


@pytest.mark.parametrize(("name", "usable"), [
    ("web", True), ("db_1", True), ("_x", True),
    ("vars", False), ("run", False), ("self", False), ("env", False), ("home", False),
    ("environ", False), ("range", False), ("loop", False), ("caller", False),
    ("true", False), ("none", False), ("a-b", False), ("1a", False), ("x y", False),
    ("{{", False),
])
def test_service_names_a_template_can_reach(name, usable):
    assert usable_as_name(name) is usable


def test_empty_sections_become_empty_mappings_at_their_line():
    data = load_yaml("vars:\nclouds:\ndefaults:\nservices:\n  a:\n  b: {}\nname: x\n", "f.yml")
    empty_sections(data)
    for key, line in (("vars", 1), ("clouds", 2), ("defaults", 3)):
        assert isinstance(data[key], PosDict) and data[key] == {} and data[key].line == line
    services = data["services"]
    assert isinstance(services["a"], PosDict) and services["a"].line == 5
    assert services["a"] == {} and services["b"] == {}
    assert data["name"] == "x"
    data = load_yaml("services:\n  a: {}\n  b:\n", "f.yml")
    empty_sections(data)
    assert data["services"]["b"].line == 3
    data = load_yaml("services:\n", "f.yml")
    empty_sections(data)
    assert isinstance(data["services"], PosDict) and data["services"].line == 1
    listed = PosList([1])
    empty_sections(listed)
    assert listed == [1]
    data = load_yaml("services: [a]\nvars: 3\n", "f.yml")
    empty_sections(data)
    assert data == {"services": ["a"], "vars": 3}


@pytest.mark.parametrize(("stem", "name"), [
    ("my plan", "my-plan"), ("my plan;x", "my-plan-x"), ("..hidden", "hidden"),
    ("-_.x", "x"), ("Xmas", "Xmas"), ("a.b_c-d", "a.b_c-d"), ("ü", "plan"), ("", "plan"), ("a" * 60, "a" * 50),
    ("x" + "é" * 3 + "y", "x-y"),
])
def test_plan_names_from_files_fit_run_names(stem, name):
    assert safe_plan_name(stem) == name


def test_limits_from_the_environment(monkeypatch):
    monkeypatch.delenv("CLOUDINITD_MAX_INSTANCES", raising=False)
    assert Limits.from_env() == Limits(1000, 2000)
    assert Limits.from_env(5) == Limits(per_service=5, per_run=5)
    monkeypatch.setenv("CLOUDINITD_MAX_INSTANCES", "7")
    assert Limits.from_env() == Limits(per_service=7, per_run=7)
    assert Limits.from_env(3) == Limits(per_service=3, per_run=3)
    monkeypatch.setenv("CLOUDINITD_MAX_INSTANCES", "999999999")
    assert Limits.from_env().per_run == 999999999
    for bad in ("x7", "-1", "1000000000", "9" * 50):
        monkeypatch.setenv("CLOUDINITD_MAX_INSTANCES", bad)
        with pytest.raises(UsageError) as info:
            Limits.from_env()
        assert str(info.value) == ("$CLOUDINITD_MAX_INSTANCES must be a whole number, got"
                                   f" {bad[:40]!r}")
    monkeypatch.setenv("CLOUDINITD_MAX_INSTANCES", "")
    assert Limits.from_env() == Limits()


@pytest.mark.parametrize(("data", "message"), [
    (b"a" * 2049, "f.yml:1: file is larger than the limit of 2 KiB"),
    (b"ok\nb\xffc\n", "f.yml:2: not UTF-8: byte 0xff at line 2, column 2"),
    ("é\nxé\xff".encode("latin-1"), "f.yml:1: not UTF-8: byte 0xe9 at line 1, column 1"),
    ("ab\nxé".encode() + b"\xfe", "f.yml:2: not UTF-8: byte 0xfe at line 2, column 3"),
    (b"\n\xff", "f.yml:2: not UTF-8: byte 0xff at line 2, column 1"),
])
def test_read_text_refuses_big_or_non_utf8_files(tmp_path, data, message):
    path = tmp_path / "f"
    path.write_bytes(data)
    with pytest.raises(PlanError) as info:
        read_text(path, 2048, "f.yml")
    assert str(info.value) == message


def test_read_text_at_the_limit(tmp_path):
    path = tmp_path / "f"
    path.write_bytes("é".encode() * 1024)
    assert read_text(path, 2048, "f.yml") == "é" * 1024


def test_read_text_reads_no_more_than_the_limit(monkeypatch):
    # A device is refused unopened; should a check ever let an endless file through
    # (one that grows while it is read), the read still stops after limit + 1 bytes.
    with pytest.raises(FileRefused) as refused:
        read_text(Path("/dev/zero"), 1024, "zero")
    assert refused.value.strerror == "it is not a regular file"
    monkeypatch.setattr(limits, "file_problem", lambda *_: None)
    monkeypatch.setattr(limits, "_kind_problem", lambda *_: None)
    with pytest.raises(PlanError) as info:
        within(20, read_text, Path("/dev/zero"), 1024, "zero")
    assert str(info.value) == "zero:1: file is larger than the limit of 1 KiB"
