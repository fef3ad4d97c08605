"""The dependency graph: edges from after / templates / env / host, levels, cycles."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloudinitd.errors import PlanErrors
from cloudinitd.graph import boot_levels, build_graph, service_references
from cloudinitd.plan.loader import load_plan

PLANS = Path(__file__).parent / "plans"


@pytest.fixture(autouse=True)
def in_plans(monkeypatch):
    monkeypatch.chdir(PLANS)


def plan_in(tmp_path: Path, text: str, scripts: dict[str, str] | None = None):
    for name, body in (scripts or {}).items():
        (tmp_path / name).write_text(body)
    (tmp_path / "plan.yml").write_text(text)
    return load_plan(tmp_path / "plan.yml")


def load_errors(tmp_path: Path, text: str, scripts: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(PlanErrors) as info:
        plan_in(tmp_path, text, scripts)
    prefix = f"{tmp_path}/"
    return [str(e).replace(prefix, "") for e in info.value.errors]


def test_diamond_levels():
    graph = build_graph(load_plan("good/diamond.yml"))
    assert boot_levels(graph) == [["a"], ["b", "c"], ["d"]]
    assert set(graph.edges) == {("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")}
    assert graph.edges["a", "b"]["reasons"] == ["a.address"]  # from b's env value
    assert graph.edges["a", "c"]["reasons"] == ["after"]
    assert graph.nodes["d"]["service"].name == "d"


def test_cluster_references_and_levels():
    plan = load_plan("good/cluster.yml")
    refs = service_references(plan)
    assert refs["compute"] == {("head", "address"), ("head", "export_dir")}
    assert refs["authorize"] >= {
        ("compute", "instances"),
        ("compute", "address"),
        ("compute", "count"),
        ("head", None),
    }
    assert refs["head"] == set() and refs["gateway"] == set()
    graph = build_graph(plan)
    assert graph.edges["head", "authorize"]["reasons"] == ["host"]
    assert "after" in graph.edges["compute", "authorize"]["reasons"]
    assert boot_levels(graph) == [["gateway", "head"], ["compute"], ["authorize"]]


def test_references_inside_expressions_filters_and_indexes(tmp_path):
    plan = plan_in(
        tmp_path,
        """
services:
  db: {exports: [port]}
  web: {count: 2}
  app:
    boot: app.sh.j2
""",
        {
            "app.sh.j2": """\
{% set first = web.instances[0] %}
{% macro show(x) %}{{ x }}{% endmacro %}
echo {{ show(first.address) }} {{ db['port'] | int + 1 }} {{ web.instances[1].hostname }}
{{ "%s:%s" | format(db.address, db.port) }}
{% for w in web.instances if w.index > 0 %}{{ loop.index }} {{ w.name }}{% endfor %}
{{ run }} {{ self.instances | length }} {{ range(3) | list }}
"""
        },
    )
    assert service_references(plan)["app"] == {
        ("web", "instances"),
        ("web", "hostname"),
        ("web", "index"),
        ("web", "name"),
        ("db", "port"),
        ("db", "address"),
    }


def test_guarded_names_are_not_errors(tmp_path):
    plan = plan_in(
        tmp_path,
        "services:\n  a: {boot: a.sh.j2}\n",
        {
            "a.sh.j2": """\
{% if vars.maybe is defined %}{{ vars.maybe }}{% endif %}
{{ vars.other | default("x") }} {{ nothing | default(1) }}
"""
        },
    )
    assert service_references(plan)["a"] == set()


def test_plain_scripts_are_not_read_as_templates(tmp_path):
    plan = plan_in(
        tmp_path, "services:\n  a: {boot: a.sh}\n", {"a.sh": "echo {{ nobody.x }} ${#}\n"}
    )
    assert service_references(plan)["a"] == set()


def test_self_after_and_unknown_after_are_reported_together(tmp_path):
    assert load_errors(tmp_path, "services:\n  a:\n    after: [a, zz]\n") == [
        "plan.yml:3: service 'a' cannot come after itself",
        "plan.yml:3: service 'a': unknown service 'zz' in after",
    ]


def test_env_value_errors_point_at_the_env_key(tmp_path):
    assert load_errors(
        tmp_path,
        """\
services:
  head: {}
  b:
    env:
      OK: "{{ head.address }}"
      BAD: "{{ head.nope }}"
      LOOP: "{{ env.OK }}"
""",
    ) == [
        "plan.yml:6: unknown attribute 'head.nope': service 'head' has no attribute 'nope' "
        "built in or in its exports",
        "plan.yml:7: an env value cannot use 'env' (only scripts can)",
    ]


def test_self_attribute_and_env_are_checked(tmp_path):
    assert load_errors(
        tmp_path,
        "services:\n  a: {boot: a.sh.j2, exports: [port], env: {X: 1}}\n",
        {"a.sh.j2": "{{ self.port }} {{ self.adress }}\n{{ env.X }} {{ env.Y }}\n"},
    ) == [
        "a.sh.j2:1: unknown attribute 'self.adress': service 'a' has no attribute 'adress' "
        "built in or in its exports (did you mean 'address'?)",
        "a.sh.j2:2: service 'a' has no env 'Y'",
    ]


def test_host_cycle_and_two_separate_cycles(tmp_path):
    assert load_errors(
        tmp_path,
        """\
services:
  a: {host: b}
  b: {after: [a]}
  x: {after: [z]}
  y: {after: [x]}
  z: {after: [y]}
""",
    ) == [
        "plan.yml:2: dependency cycle: a -> b -> a (each service needs the next)",
        "plan.yml:4: dependency cycle: x -> z -> y -> x (each service needs the next)",
    ]


def test_cycle_through_template_reference(tmp_path):
    assert load_errors(
        tmp_path,
        """\
services:
  head: {boot: head.sh.j2}
  compute: {boot: compute.sh.j2, exports: [key]}
""",
        {
            "head.sh.j2": "{% for c in compute.instances %}{{ c.key }}{% endfor %}\n",
            "compute.sh.j2": "{{ head.address }}\n",
        },
    ) == [
        "plan.yml:2: dependency cycle: head -> compute -> head (each service needs the next)",
    ]


def test_host_typo_gets_did_you_mean(tmp_path):
    assert load_errors(tmp_path, "services:\n  head: {}\n  x: {host: haed}\n") == [
        "plan.yml:3: service 'x': host 'haed' is not a service (did you mean 'head'?); "
        "write a full address for an existing host",
    ]


def test_instance_attribute_of_multi_instance_service_needs_instances(tmp_path):
    assert load_errors(
        tmp_path,
        "services:\n  c: {count: 3}\n  x: {boot: x.sh.j2}\n",
        {"x.sh.j2": "ok {{ c.count }} {{ c.instances[0].address }}\n{{ c.address }}\n"},
    ) == [
        "x.sh.j2:2: service 'c' has 3 instances: use c.instances (e.g. a for loop), not 'c.address'",
    ]


def test_context_uses_tells_which_services_read_home(tmp_path):
    from cloudinitd.graph import context_uses

    plan = plan_in(
        tmp_path,
        """
services:
  vm: {boot: vm.sh.j2, env: {WHO: "{{ run }}"}}
  other: {boot: other.sh.j2}
""",
        {
            "vm.sh.j2": "mount {{ home.host }}:{{ home.dir }} {{ self.name }}\n",
            "other.sh.j2": "{% set home = 1 %}{{ home }} {{ vars | length }}\n",
        },
    )
    assert context_uses(plan) == {"vm": {"home", "self", "run"}, "other": {"vars"}}


@pytest.mark.parametrize("guard", ["d", "default", "d('x')", "default('x', true)"])
def test_each_default_filter_spelling_guards_on_its_own(tmp_path, guard):
    plan = plan_in(tmp_path, "services:\n  a: {boot: a.sh.j2}\n",
                   {"a.sh.j2": "{{ vars.nope | " + guard + " }} {{ nobody.x | " + guard + " }}\n"})
    assert service_references(plan)["a"] == set()


def test_cycle_message_names_a_shortest_cycle(tmp_path):
    # a sits on a 2-cycle (a, b) and on a 4-cycle (a, c, d, e): the message shows the short one.
    errors = load_errors(tmp_path, """\
services:
  a:
    after: [c, b]
  b:
    after: [a]
  c:
    after: [d]
  d:
    after: [e]
  e:
    after: [a]
""")
    assert errors == ["plan.yml:2: dependency cycle: a -> b -> a (each service needs the next)"]
    # The shortest cycle need not pass through the service written first.
    errors = load_errors(tmp_path, """\
services:
  x:
    after: [y]
  y:
    after: [z]
  z:
    after: [w, x]
  w:
    after: [z]
""")
    assert errors == ["plan.yml:6: dependency cycle: z -> w -> z (each service needs the next)"]


def test_block_list_items_are_reported_at_their_own_line(tmp_path):
    # Each error names the line of the list item, not the line of the list's key.
    after = load_errors(tmp_path, """\
services:
  a: {}
  b:
    after:
      - a
      - nosuch
""")
    assert after == ["plan.yml:6: service 'b': unknown service 'nosuch' in after"]
    clouds = load_errors(tmp_path, """\
services:
  b:
    clouds:
      - cloud: local
      - cloud: nocloud
""")
    assert clouds == ["plan.yml:5: service 'b': unknown cloud 'nocloud' (known: local, qemu)"]
    shape = load_errors(tmp_path, """\
services:
  b:
    exports:
      - ok
      - 1bad
""")
    assert shape == ["plan.yml:5: services.b.exports[1]: expected an attribute name, got '1bad'"]
