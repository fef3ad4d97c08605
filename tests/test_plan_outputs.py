"""cloudinitd/plan/outputs.py: plan-level outputs checked against the graph and rendered
(pure, in-process; in the mutation test selection)."""

from __future__ import annotations

import textwrap

import pytest

from cloudinitd.errors import PlanErrors
from cloudinitd.plan.loader import load_plan
from cloudinitd.plan.model import Pos
from cloudinitd.plan.outputs import render_outputs

PLAN = """\
vars: {port: 80}
services:
  db:
    exports: [token]
    boot: db.sh
  web:
    count: 2
outputs:
  url: "http://{{ db.address }}:{{ vars.port }}/"
  all: "{{ web.instances | map(attribute='address') | join(',') }}"
  run: "{{ run }}"
  'on': true
  n: 3
"""


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "db.sh").write_text("echo\n")


def _load(text: str):
    with open("plan.yml", "w") as f:
        f.write(textwrap.dedent(text))
    return load_plan("plan.yml")


def test_outputs_are_kept_as_text_with_their_lines():
    plan = _load(PLAN)
    assert plan.outputs == {"url": "http://{{ db.address }}:{{ vars.port }}/",
                            "all": "{{ web.instances | map(attribute='address') | join(',') }}",
                            "run": "{{ run }}", "on": "true", "n": "3"}
    assert plan.outputs_pos == {k: Pos("plan.yml", n)
                                for k, n in (("url", 9), ("all", 10), ("run", 11), ("on", 12),
                                             ("n", 13))}


def test_outputs_render_against_a_world():
    plan = _load(PLAN)
    world = {"db": [{"index": 0, "address": "10.0.0.1", "token": "t"}],
             "web": [{"index": 0, "address": "10.0.0.2"}, {"index": 1, "address": "10.0.0.3"}]}
    values, errors = render_outputs(plan, "r7", world)
    assert values == {"url": "http://10.0.0.1:80/", "all": "10.0.0.2,10.0.0.3", "run": "r7",
                      "on": "true", "n": "3"}
    assert errors == {}


def test_an_output_that_cannot_render_is_an_error_of_its_own():
    plan = _load(PLAN)
    values, errors = render_outputs(plan, "r7", {"db": [{"index": 0, "address": "10.0.0.1"}]})
    assert values == {"url": "http://10.0.0.1:80/", "all": "", "run": "r7", "on": "true",
                      "n": "3"}
    assert errors == {}
    values, errors = render_outputs(plan, "r7", {})
    assert list(errors) == ["url"]
    assert errors["url"].startswith("plan.yml:9: ")
    plan.outputs_pos.pop("url")
    values, errors = render_outputs(plan, "r7", {})
    assert errors["url"].startswith("outputs.url: ")


@pytest.mark.parametrize(("outputs", "expected"), [
    ('  s: "{{ self.address }}"\n',
     ["plan.yml:5: outputs: s: an output reads services, vars and run (not self or home)"]),
    ('  h: "{{ home.dir }}"\n',
     ["plan.yml:5: outputs: h: an output reads services, vars and run (not self or home)"]),
    ('  ok: "{{ db.address }}"\n  t: "{{ db.tokn }}"\n  u: "{{ nope }}"\n',
     ["plan.yml:6: unknown attribute 'db.tokn': service 'db' has no attribute 'tokn' built in"
      " or in its exports (did you mean 'token'?)",
      "plan.yml:7: unknown service or variable 'nope'"]),
    ('  db: "x"\n', ["plan.yml:5: outputs: 'db' is also a service; `output RUN db` must mean"
                     " one of them"]),
])
def test_bad_outputs_are_errors_at_their_line(outputs, expected):
    with pytest.raises(PlanErrors) as info:
        _load("services:\n  db:\n    exports: [token]\noutputs:\n" + outputs)
    assert [str(e) for e in info.value.errors] == expected


def test_a_plan_without_outputs_has_none():
    plan = _load("services:\n  db: {}\n")
    assert plan.outputs == {} and render_outputs(plan, "r", {}) == ({}, {})


def test_render_errors_name_the_output_line_and_what_is_missing(monkeypatch):
    monkeypatch.setenv("MUTPLAN_X", "hello")
    plan = _load("""\
        vars: {port: 80}
        services:
          web: {}
        outputs:
          z: "{{ 1/0 }}"
          a: "{{ web.address }}"
          e: "{{ environ.MUTPLAN_X }}"
          v: "{{ vars.port }}"
    """)
    values, errors = render_outputs(plan, "r", {"web": []})
    assert values == {"e": "hello", "v": "80"}
    assert errors == {
        "z": "plan.yml:5: ZeroDivisionError: division by zero",
        "a": "plan.yml:6: service 'web' has 0 instances: use web.instances (e.g. {% for i in"
             " web.instances %}{{ i.address }}{% endfor %}), not web.address",
    }
    # A recorded plan read back without one of its vars: the error names the var.
    plan.vars.pop("port")
    values, errors = render_outputs(plan, "r", {"web": [{"index": 0, "address": "10.0.0.1"}]})
    assert values == {"a": "10.0.0.1", "e": "hello"}
    assert errors["v"] == "plan.yml:8: undefined 'vars.port'"


def test_an_output_cannot_read_env():
    with pytest.raises(PlanErrors) as info:
        _load('services:\n  web: {}\noutputs:\n  e: "{{ env.HOME }}"\n')
    assert [str(e) for e in info.value.errors] == [
        "plan.yml:4: an env value cannot use 'env' (only scripts can)"]
