"""plan/yamlpos: YAML loading that keeps the line of every key, value and item.

Each case runs with libyaml (the loader in use) and with the pure-Python
loader that stands in where libyaml is missing: both must give the same lines
and one-line errors at the same line (their wording of a YAML syntax error
differs).
"""

from __future__ import annotations

import pytest
import yaml

from cloudinitd.errors import PlanError
from cloudinitd.plan import yamlpos
from cloudinitd.plan.yamlpos import Lines, PosDict, PosList, line_of, load_yaml

LOADERS = {"libyaml": yaml.CSafeLoader, "python": yamlpos._PyLoader}


@pytest.fixture(params=LOADERS.values(), ids=LOADERS)
def loader(request, monkeypatch):
    monkeypatch.setattr(yamlpos, "_Loader", request.param)
    return request.param


def error(text: str) -> PlanError:
    with pytest.raises(PlanError) as info:
        load_yaml(text, "f.yml")
    assert info.value.file == "f.yml"
    return info.value


def test_lines_of_keys_values_and_items(loader):
    doc = load_yaml("a: 1\nb:\n  - x\n  -\n    y\nc:\n  d: 2\n", "p.yml")
    assert isinstance(doc, PosDict) and isinstance(doc["b"], PosList)
    assert (doc.line, doc["b"].line, doc["c"].line) == (1, 3, 7)
    assert (doc.key_line("a"), doc.key_line("b"), doc.key_line("c")) == (1, 2, 6)
    assert doc.value_line("a") == 1 and doc.value_line("c") == 7
    assert doc["b"].item_lines == [3, 5]
    assert line_of(doc, ["c", "d"]) == 7


def test_unknown_keys_and_indexes_fall_back_to_the_container():
    doc = load_yaml("\n\nx:\n  a: 1\n  l: [p, q]\n", "p.yml")
    inner = doc["x"]
    assert inner.line == 4
    assert inner.key_line("zz") == 4 and inner.value_line("zz") == 4
    lst = inner["l"]
    assert (lst.item_line(0), lst.item_line(1)) == (5, 5)
    assert (lst.item_line(2), lst.item_line(-1)) == (lst.line, lst.line)
    plain = PosDict({"k": 1}, line=9)
    assert plain["k"] == 1 and plain.key_line("k") == 9 and plain.value_line("k") == 9
    assert PosList([1, 2], line=7).item_line(0) == 7


@pytest.mark.parametrize(("path", "line"), [
    ([], 2),
    (["a"], 2),
    (["a", "b"], 3),
    (["a", "b", 0], 4),
    (["a", "b", 1], 5),
    (["a", "b", 1, "c"], 5),
    (["a", "b", 2], 3),       # no such item: the list's key
    (["a", "b", -1], 3),      # negative indexes are not items
    (["a", "b", "0"], 3),     # a string is not an index
    (["a", "nope", "x"], 2),  # stops at the first step not found
    (["a", "b", 0, "deeper"], 4),  # a scalar has no parts
])
def test_line_of_walks_keys_and_indexes(path, line):
    doc = load_yaml("\na:\n  b:\n  - x\n  - c: 1\n", "p.yml")
    assert line_of(doc, path) == line


def test_line_of_plain_values_uses_the_default():
    assert line_of({"a": 1}, ["a"]) == 1
    assert line_of({"a": 1}, ["a"], default=7) == 7
    assert line_of(PosDict(line=0), [], default=3) == 3


def test_lines_count_only_newlines():
    lines = Lines("ab\ncd\u2028ef\n\ngh")
    assert [lines.line(i) for i in (0, 2, 3, 8, 9, 10)] == [1, 1, 2, 2, 3, 4]
    assert [lines.column(i) for i in (0, 1, 3, 5, 10, 11)] == [1, 2, 1, 3, 1, 2]


def test_empty_document_is_none(loader):
    assert load_yaml("", "f.yml") is None
    assert load_yaml("# only a comment\n", "f.yml") is None


@pytest.mark.parametrize(("text", "line", "message"), [
    ("a: 1\nb: 2\na: 3\n", 3, "duplicate key 'a' (first at line 1)"),
    ("x: 1\n? [1, 2]\n: v\n", 2, "a mapping key must be a plain value"),
    ("a: b: c\n", 1, "bad YAML: mapping values are not allowed "),
    ("a: [1\n", 2, "bad YAML: "),
    ("a: *nope\n", 1, "bad YAML: found undefined alias"),
    ("a: 1\nb: \x07\n", 2, "bad YAML: character U+0007 is not allowed in YAML (column 4)"),
    ("é: 1\nb: ü\x1b\n", 2, "bad YAML: character U+001B is not allowed in YAML (column 5)"),
    ("a: " + "9" * 5000 + "\n", 1, "bad YAML value: Exceeds the limit"),
])
def test_errors_are_one_line_with_the_line(loader, text, line, message):
    err = error(text)
    assert err.line == line
    assert err.message.startswith(message), err.message
    assert "\n" not in err.message


def test_merge_keys_are_not_duplicates_but_written_keys_are(loader):
    doc = load_yaml("base: &b {k: v, j: 1}\nd:\n  <<: *b\n  k: w\n", "f.yml")
    assert doc["d"] == {"k": "w", "j": 1}
    assert doc["d"].key_line("k") == 4
    assert error("base: &b {k: v}\nd:\n  <<: *b\n  k: w\n  k: x\n").message == (
        "duplicate key 'k' (first at line 4)")


def test_an_anchor_is_one_object_wherever_it_is_used(loader):
    doc = load_yaml("a: &x {k: [1]}\nb: *x\nc: *x\n", "f.yml")
    assert doc["a"] is doc["b"] is doc["c"]
    doc = load_yaml("a: &l [1]\nb: *l\nc: [*l]\nd: [*l]\n", "f.yml")
    assert doc["a"] is doc["b"] is doc["c"][0] is doc["d"][0]  # used again after it was sized


@pytest.mark.parametrize(("text", "line"), [
    ("a: &a [1, *a]\n", 1),
    ("\nb: &b {x: [*b]}\n", 2),
])
def test_an_alias_inside_its_own_value_is_refused(loader, text, line):
    err = error(text)
    assert (err.line, err.message) == (
        line, "bad YAML: an alias refers to the value that contains it")


def test_depth_limit_is_exact(loader):
    depth = yamlpos.MAX_DEPTH
    ok = "[" * depth + "]" * depth
    assert load_yaml(ok, "f.yml") is not None
    for text in ("\n" + "[" * (depth + 1) + "]" * (depth + 1), "\n" + "[" * 5000):
        err = error(text)
        assert (err.line, err.message) == (2, f"bad YAML: nested more than {depth} levels deep")


def test_nesting_through_aliases_counts_too(loader, monkeypatch):
    monkeypatch.setattr(yamlpos, "MAX_DEPTH", 4)
    assert load_yaml("a: &a [[1]]\n", "f.yml") == {"a": [[1]]}  # map, list, list, 1: 4 levels
    err = error("a: &a [[1]]\nb:\n  - *a\n")  # 5 levels once `*a` is in place
    assert (err.line, err.message) == (1, "bad YAML: nested more than 4 levels deep")


def test_expanded_size_limit_is_exact(loader, monkeypatch):
    monkeypatch.setattr(yamlpos, "MAX_NODES", 10)
    # mapping + 4 keys + 4 values + the list's item = 10 nodes; `*l` counts the list again
    assert load_yaml("a: 1\nb: 2\nc: &l [1]\nd: 4\n", "f.yml")["c"] == [1]
    err = error("a: 1\nb: 2\nc: &l [1]\nd: *l\n")
    assert (err.line, err.message) == (
        1, "bad YAML: too many values once aliases are expanded (more than 10)")


def test_billion_laughs_is_refused_at_the_line_that_explodes(loader):
    rows = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    rows += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 7)]
    err = error("\n".join(rows) + "\n")
    assert err.line == 6 and "too many values" in err.message


def test_python_loader_refuses_deep_nesting_before_the_stack_runs_out():
    loader = yamlpos._PyLoader("[" * 200 + "]" * 200)
    with pytest.raises(yamlpos._DeepError) as info:
        loader.get_single_node()
    assert info.value.mark.index == yamlpos.MAX_DEPTH  # at the first bracket too deep
    loader.dispose()
    loader = yamlpos._PyLoader("a: [[1]]")
    assert loader.get_single_node() is not None and loader.depth == 0
    loader.dispose()


def test_containers_made_in_code_default_to_line_0():
    assert PosDict().line == 0 and PosList().line == 0
    assert line_of(PosDict(), [], default=3) == 3 and line_of(PosList(), [], default=4) == 4
    made = PosDict({"a": 1}, b=2, line=5)
    assert made == {"a": 1, "b": 2} and made.line == 5
    made.key_lines["a"] = 8
    assert made.value_line("a") == 8  # no line of its own: the key's
    assert made.value_line("b") == 5  # not even a key line: the mapping's


def test_item_lines_are_per_item():
    doc = load_yaml("l:\n  - p\n  - q:\n      r: 1\n    s: 2\n", "f.yml")
    lst = doc["l"]
    assert [lst.item_line(i) for i in (0, 1, 2, -1)] == [2, 3, 2, 2]
    assert line_of(doc, ["l", 1, "s"]) == 5
    flow = load_yaml("l: [\n  p,\n  q]\n", "f.yml")["l"]
    assert (flow.line, flow.item_line(0), flow.item_line(1), flow.item_line(2)) == (1, 2, 3, 1)
    assert line_of(doc, ["l", 1, "q", "r"]) == 4


@pytest.mark.parametrize(("text", "message"), [
    ("\x07a: 1\n", "bad YAML: character U+0007 is not allowed in YAML (column 1)"),
    ("a: 1\x7f\n", "bad YAML: character U+007F is not allowed in YAML (column 5)"),
])
def test_a_refused_first_or_last_character_is_named(loader, text, message):
    assert error(text).message == message


def test_yaml_errors_of_every_shape_become_one_line():
    """_problem: the shapes a YAML error can take, including those without a mark or text."""
    from yaml.error import Mark, MarkedYAMLError

    lines = Lines("a\nb\nc\n")
    mark = Mark("f", 4, 2, 0, None, None)  # index 4: line 3
    cases = [
        (MarkedYAMLError(problem="bad  thing\n here", problem_mark=mark), ("bad thing here", 3)),
        (MarkedYAMLError(context="in a list", context_mark=mark), ("in a list", 3)),
        (MarkedYAMLError(context="in a list", problem="no end", problem_mark=mark),
         ("no end (in a list)", 3)),
        (MarkedYAMLError(), ("bad YAML", None)),
        (MarkedYAMLError(problem="maximum nesting depth reached"),
         (f"nested more than {yamlpos.MAX_DEPTH} levels deep", None)),
        (MarkedYAMLError(problem="maximum nesting depth reached", problem_mark=mark),
         (f"nested more than {yamlpos.MAX_DEPTH} levels deep", 3)),
        (yaml.YAMLError("odd\n  error"), ("odd error", None)),
    ]
    for exc, expected in cases:
        assert yamlpos._problem(exc, "a\nb\nc\n", lines) == expected
