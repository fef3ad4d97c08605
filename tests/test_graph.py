"""The dependency graph: edges from after / templates / env / host, levels, cycles."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloudinitd.errors import PlanErrors
from cloudinitd.graph import boot_levels, build_graph, dependencies, scan_text, service_references
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


# Service `a` boots a.sh.j2; the others are there to be referred to.
_PLAN = """\
vars: {version: 1}
services:
  a: {boot: a.sh.j2, exports: [port], env: {PORT: "1"}}
  db: {exports: [port], values: {url: u}}
  web: {count: 2}
  pool: {hosts: [192.0.2.1, 192.0.2.2]}
"""


def template_errors(tmp_path: Path, template: str) -> list[str]:
    """The load errors of _PLAN with `template` as a.sh.j2 ([] when it loads)."""
    try:
        plan_in(tmp_path, _PLAN, {"a.sh.j2": template})
    except PlanErrors as exc:
        return [str(e).replace(f"{tmp_path}/", "") for e in exc.errors]
    return []


def references_of_a(tmp_path: Path, template: str) -> set[tuple[str, str | None]]:
    return service_references(plan_in(tmp_path, _PLAN, {"a.sh.j2": template}))["a"]


# Names a template binds or guards itself, and names it may read: none is an error.
FINE = {
    "set": "{% set x = 1 %}{{ x }}",
    "for target": "{% for i in range(2) %}{{ i }}{{ loop.index }}{% endfor %}",
    "macro and its args": "{% macro m(p) %}{{ p }}{{ varargs }}{{ kwargs }}{% endmacro %}{{ m(1) }}",
    "caller": "{% macro m() %}{{ caller() }}{% endmacro %}{% call m() %}x{% endcall %}",
    "import": "{% import 'lib.j2' as lib %}{{ lib.f() }}",
    "from import": "{% from 'lib.j2' import f, g as h %}{{ f() }}{{ h() }}",
    "bound attribute": "{% set w = 1 %}{{ w.nope }}",
    "globals": "{{ range(2) | list }} {{ dict(a=1) }} {{ lipsum(1) }}",
    "dict methods": "{{ vars.items() | list }} {{ env.keys() | list }}",
    "guarded by tests": "{% if vars['q'] is defined %}{{ vars.q }}{% endif %}"
    "{% if self.q is undefined %}{% else %}{{ self.q }}{% endif %}",
    "guarded by filters": "{{ env.Q | d }} {{ db.q | default }} {{ zz | d }} {{ vars.q | d }}",
    "guarded elsewhere by a filter": "{{ vars.q | d }} {{ vars.q }} {{ vars['r'] | d }} {{ vars.r }}",
    "guard test over an expression": "{{ (nobody.x | int) is defined }}",
    "guard filter over an expression": "{{ (nobody.x | int) | d }} {{ web.instances[zz].index | d }}",
    "attribute of a plain loop variable": "{% for i in [1] %}{{ i.real }}{% endfor %}",
    "guarded loop attribute": "{% for c in web.instances %}{{ c.q | d }}{% endfor %}",
    "guarded instance": "{{ self.instances[0].q | d }} {{ web.instances[0].q | d }}",
    "guarded count": "{{ web.address | d }} {{ pool.address | d }}",
    "exports and values": "{{ db.port }} {{ db.url }} {{ self.port }} {{ db['url'] }}",
    "context names": "{{ run }} {{ home.dir }} {{ environ.HOME }} {{ env.PORT }} {{ vars.version }}",
    "service attributes": "{{ web.count }} {{ web.instances | length }} {{ self.count }}",
    "instance attributes": "{{ web.instances[1].hostname }} {{ self.instances[0].address }}",
    "one-instance service": "{{ db.address }} {{ self.address }}",
}


@pytest.mark.parametrize("template", FINE.values(), ids=FINE.keys())
def test_names_a_template_may_use(tmp_path, template):
    assert template_errors(tmp_path, template) == []


# template -> the one error it gives (each at a.sh.j2's line 1 unless the template says).
BAD = {
    "{{ h() }}": "unknown service or variable 'h'",
    "{{ hmoe }}": "unknown service or variable 'hmoe' (did you mean 'home'?)",
    "{{ wbe }}": "unknown service or variable 'wbe' (did you mean 'web'?)",
    "{{ varz.version }}": "unknown service or variable 'varz' (did you mean 'vars'?)",
    "{{ a.port }}": "service 'a' refers to itself as 'a.port'; use 'self.port'",
    "{{ a }}": "service 'a' refers to itself as 'a'; use 'self'",
    "{{ vars.verison }}": "unknown variable 'vars.verison' (did you mean 'version'?)",
    "{{ vars['nope'] }}": "unknown variable 'vars.nope'",
    "{{ env.Y }}": "service 'a' has no env 'Y'",
    "{{ env.PROT }}": "service 'a' has no env 'PROT' (did you mean 'PORT'?)",
    "{{ self.nope }}": "unknown attribute 'self.nope': service 'a' has no attribute 'nope' "
    "built in or in its exports",
    "{{ db.prot }}": "unknown attribute 'db.prot': service 'db' has no attribute 'prot' "
    "built in or in its exports (did you mean 'port'?)",
    "{{ db.rul }}": "unknown attribute 'db.rul': service 'db' has no attribute 'rul' "
    "built in or in its exports (did you mean 'url'?)",
    "{{ db['nope'] }}": "unknown attribute 'db.nope': service 'db' has no attribute 'nope' "
    "built in or in its exports",
    "{% for c in web.instances %}{{ c.count }}{% endfor %}":
    "unknown attribute 'web.count': service 'web' has no attribute 'count' "
    "built in or in its exports (did you mean 'cloud'?)",
    "{{ self.instances[0].nope }}": "unknown attribute 'a.nope': service 'a' has no attribute "
    "'nope' built in or in its exports",
    "{% for c in self.instances %}{{ c.nope }}{% endfor %}": "unknown attribute 'a.nope': "
    "service 'a' has no attribute 'nope' built in or in its exports",
    "{{ web.address }}": "service 'web' has 2 instances: use web.instances (e.g. a for loop), "
    "not 'web.address'",
    "{{ pool.name }}": "service 'pool' has 2 instances: use pool.instances (e.g. a for loop), "
    "not 'pool.name'",
    "{% for c in web.instances %}{% else %}{{ nobody }}{% endfor %}":
    "unknown service or variable 'nobody'",
    "{% for c in web.instances if c.nope %}{% endfor %}": "unknown attribute 'web.nope': "
    "service 'web' has no attribute 'nope' built in or in its exports",
    "{% for c in nobody %}{% endfor %}": "unknown service or variable 'nobody'",
    "{% for i, c in web.instances %}{{ c.x }}{% endfor %}": None,  # not a loop over instances
    "{% filter upper %}{{ nobody }}{% endfilter %}": "unknown service or variable 'nobody'",
    "{{ (nobody | d).x }}": None,
    "{{ nobody.x }}": "unknown service or variable 'nobody'",
    "{{ nobody().x }}": "unknown service or variable 'nobody'",
    "{{ nobody is number }}": "unknown service or variable 'nobody'",
    "{{ nobody | int }}": "unknown service or variable 'nobody'",
    "{{ a.nope }}": "service 'a' refers to itself as 'a.nope'; use 'self.nope'",
    # Something guarded that _dotted cannot name guards nothing else.
    "{{ range(1).x | d }} {{ nobody().x }}": "unknown service or variable 'nobody'",
    "{{ range(1)['x'] | d }} {{ nobody()['x'] }}": "unknown service or variable 'nobody'",
    "{{ web[0] }} {{ nobody[0] }}": "unknown service or variable 'nobody'",
}


@pytest.mark.parametrize("template", BAD, ids=range(len(BAD)))
def test_template_errors_name_the_mistake(tmp_path, template):
    want = BAD[template]
    assert template_errors(tmp_path, template) == ([f"a.sh.j2:1: {want}"] if want else [])


# template -> the references a.sh.j2 makes (its own instances are no reference).
REFS = {
    "{{ db }}": {("db", None)},
    "{{ db.port | d }} {{ db.nope | d }}": {("db", "port"), ("db", "nope")},
    "{% set x = 1 %}{{ web[0] }} {{ db[x] }}": {("web", None), ("db", None)},
    "{% for c in web.instances %}{{ c.name }}{% endfor %}": {("web", "instances"), ("web", "name")},
    "{{ web.instances[0].index }}": {("web", "instances"), ("web", "index")},
    "{{ self.instances[0].index }} {% for c in self.instances %}{{ c.name }}{% endfor %}": set(),
    "{% set db = 1 %}{{ db }} {% for web in [1] %}{{ web }}{% endfor %}": set(),
    "{% for c in db.port.instances %}{% endfor %}": {("db", "port")},
    "{% for pool in web.instances %}{{ pool.name }}{% endfor %}": {
        ("web", "instances"), ("web", "name")},
}


@pytest.mark.parametrize("template", REFS, ids=range(len(REFS)))
def test_references_a_template_makes(tmp_path, template):
    assert references_of_a(tmp_path, template) == REFS[template]


def test_references_and_errors_carry_their_line(tmp_path):
    plan = plan_in(tmp_path, _PLAN, {"a.sh.j2": "x\n"})
    scan = scan_text(plan, plan.services["a"], "\n{{ db.port }}\n\n{% for c in web.instances %}\n"
                     "{{ c.name }}{{ nobody }}{% endfor %}\n{{ web.instances[0].name }}", "f.j2", 0, True)
    assert [(r.source, r.target, r.attr, r.pos.file, r.pos.line) for r in scan.refs] == [
        ("a", "db", "port", "f.j2", 2),
        ("a", "web", "instances", "f.j2", 4),
        ("a", "web", "name", "f.j2", 5),
        ("a", "web", "instances", "f.j2", 6),
        ("a", "web", "name", "f.j2", 6),
    ]
    assert [(e.file, e.line) for e in scan.errors] == [("f.j2", 5)]
    # An env value or argument: everything at the plan line given.
    scan = scan_text(plan, plan.services["a"], "\n{{ db.port }}\n{{ nobody }}", "p.yml", 9, False)
    assert [(r.pos.file, r.pos.line) for r in scan.refs] == [("p.yml", 9)]
    assert [(e.file, e.line) for e in scan.errors] == [("p.yml", 9)]
    assert scan.uses == set()


def test_syntax_errors_are_reported_at_their_line(tmp_path):
    assert template_errors(tmp_path, "ok\n{% if %}\n") == [
        "a.sh.j2:2: template syntax error: Expected an expression, got 'end of statement block'"
    ]
    assert load_errors(tmp_path, "services:\n  a:\n    env:\n      X: '{{ }'\n") == [
        "plan.yml:4: template syntax error: unexpected '}'"
    ]


def test_arguments_env_and_values_are_read_as_templates(tmp_path):
    text = """\
services:
  db: {exports: [port]}
  web: {}
  cache: {}
  a:
    boot:
      script: a.sh
      args: ["{{ db.port }}", "{{ nobody }}", "{{ env.W }}"]
    env: {W: "{{ web.address }}", E: "{{ env.W }}"}
    values:
      url: "{{ cache.name }}"
      bad: "{{ cache.nope }}"
      env: "{{ env.W }}"
"""
    assert load_errors(tmp_path, text, {"a.sh": "echo {{ unread }}\n"}) == [
        "plan.yml:8: unknown service or variable 'nobody'",
        "plan.yml:8: an env value cannot use 'env' (only scripts can)",
        "plan.yml:9: an env value cannot use 'env' (only scripts can)",
        "plan.yml:12: unknown attribute 'cache.nope': service 'cache' has no attribute 'nope' "
        "built in or in its exports",
        "plan.yml:13: an env value cannot use 'env' (only scripts can)",
    ]
    good = text.replace(', "{{ nobody }}", "{{ env.W }}"', "").replace(', E: "{{ env.W }}"', "")
    good = good.replace('      bad: "{{ cache.nope }}"\n      env: "{{ env.W }}"\n', "")
    plan = plan_in(tmp_path, good, {"a.sh": "echo {{ unread }}\n"})
    assert service_references(plan)["a"] == {("db", "port"), ("web", "address"), ("cache", "name")}
    graph = build_graph(plan)
    assert dependencies(graph, "a") == ["cache", "db", "web"]
    assert dependencies(graph, "db") == []


def test_edge_reasons_name_each_kind_of_use(tmp_path):
    plan = plan_in(tmp_path, """\
services:
  db: {exports: [port]}
  head: {}
  a:
    host: head
    after: [db]
    boot: a.sh.j2
    env: {H: "{{ head.address }}"}
""", {"a.sh.j2": "{{ db }} {{ db.port }} {{ head | length }}\n"})
    graph = build_graph(plan)
    assert graph.edges["db", "a"]["reasons"] == ["after", "db", "db.port"]
    # Naming the host service plainly is the same use as `host:`.
    assert graph.edges["head", "a"]["reasons"] == ["head.address", "host"]
    assert set(graph.edges) == {("db", "a"), ("head", "a")}
    assert boot_levels(graph) == [["db", "head"], ["a"]]


def test_shortest_cycle_ties_go_to_the_service_written_first(tmp_path):
    # m is on two 2-cycles (with z, with y) and so are z and y: the message starts at m,
    # the first written, and goes through z, written before y (not in name order).
    errors = load_errors(tmp_path, """\
services:
  k: {}
  m: {after: [y, z]}
  z: {after: [m]}
  y: {after: [m]}
""")
    assert errors == ["plan.yml:3: dependency cycle: m -> z -> m (each service needs the next)"]


def test_service_references_refuses_a_plan_with_template_errors(tmp_path):
    plan = plan_in(tmp_path, "services:\n  db: {}\n  a: {env: {X: '{{ db.address }}'}}\n")
    assert service_references(plan)["a"] == {("db", "address")}
    plan.services["a"].env["X"] = "{{ db.nope }}"  # as if loaded without the check
    with pytest.raises(PlanErrors) as info:
        service_references(plan)
    assert [e.message for e in info.value.errors] == [
        "unknown attribute 'db.nope': service 'db' has no attribute 'nope' built in or in "
        "its exports"
    ]


def test_cycles_are_reported_in_the_order_they_are_written(tmp_path):
    # a's cycle needs x's cycle: a graph search meets x's first, the message order is a's.
    assert load_errors(tmp_path, """\
services:
  a: {after: [b, x]}
  b: {after: [a]}
  x: {after: [y]}
  y: {after: [x]}
""") == [
        "plan.yml:2: dependency cycle: a -> b -> a (each service needs the next)",
        "plan.yml:4: dependency cycle: x -> y -> x (each service needs the next)",
    ]


def test_after_written_as_one_name_is_reported_at_its_key(tmp_path):
    assert load_errors(tmp_path, "services:\n  a:\n    after: zz\n") == [
        "plan.yml:3: service 'a': unknown service 'zz' in after"
    ]
