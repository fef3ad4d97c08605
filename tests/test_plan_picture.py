"""cloudinitd/plan/picture.py: the plan as a Graphviz picture (pure, in-process; in the
mutation test selection).

The DOT text is the command's output (`cloudinitd graph --format dot`), so it is
compared whole.
"""

from __future__ import annotations

import textwrap

import networkx as nx
import pytest

from cloudinitd.graph import boot_levels, build_graph
from cloudinitd.plan.loader import load_plan
from cloudinitd.plan.picture import MAX_INSTANCE_LINES, plan_dot, run_dot

PLAN = """\
name: pic
clouds:
  aws: {provider: ec2, region: us-east-1}
services:
  store:
    cloud: local
    exports: [greeting]
    values: {port: 1}
  web:
    clouds: [{cloud: aws, max: 2}, {cloud: local}]
    count: 3
    ready: web.sh.j2
  side:
    host: store
  here:
    local: true
    after: [web]
"""

HEADER = """\
  graph [rankdir=LR, fontname="DejaVu Sans", fontsize=16, label="{title}", labelloc=t, \
labeljust=l, nodesep=0.35, ranksep=0.8, pad=0.3];
  node [shape=box, style="rounded,filled", fillcolor="{fill}", color="#4a5a78", \
fontname="DejaVu Sans", fontsize=13, margin="0.25,0.12"];
  edge [fontname="DejaVu Sans", fontsize=11, color="#6b7a99", fontcolor="#39445c"];
"""
LEVEL = '    label="level {n}"; style=dashed; color="#b8c0d0"; fontsize=12;\n'
EDGES = """\
  "store" -> "side" [label="host"];
  "store" -> "web" [label="store.greeting"];
  "web" -> "here" [label="after"];
}
"""


@pytest.fixture
def plan(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "plan.yml").write_text(PLAN)
    (tmp_path / "web.sh.j2").write_text("echo {{ store.greeting }}\n")
    plan = load_plan("plan.yml")
    graph = build_graph(plan)
    return plan, graph, boot_levels(graph)


def test_the_plan_picture_whole(plan):
    expected = (
        'digraph "pic" {\n'
        + HEADER.format(title="plan pic: 4 services, 4 instances, 3 boot levels", fill="#eef2fa")
        + "  subgraph cluster_level0 {\n" + LEVEL.format(n=0)
        + '    "store" [label="store\\n1 x local\\nexports greeting, port"];\n  }\n'
        + "  subgraph cluster_level1 {\n" + LEVEL.format(n=1)
        + '    "side" [label="side\\non host store"];\n'
        + '    "web" [label="web\\n3 x aws (max 2), then local"];\n  }\n'
        + "  subgraph cluster_level2 {\n" + LEVEL.format(n=2)
        + '    "here" [label="here\\non this machine"];\n  }\n'
        + EDGES
    )
    assert plan_dot(*plan) == expected


def test_the_run_picture_whole(plan):
    status = {
        "run": 'r"1', "status": "booting",
        "services": {
            "store": {"status": "ready",
                      "instances": [{"index": 0, "state": "running", "address": "10.0.0.1"}]},
            "web": {"status": "failed",
                    "instances": [{"index": i, "state": "running"} for i in range(8)]},
            "side": {"status": "booting", "instances": [{"index": 0, "address": "hôte"}]},
        },
    }
    web = "\\n".join(f"/{i} running -" for i in range(6))
    expected = (
        'digraph "r\\"1" {\n'
        + HEADER.format(title='run r\\"1 (plan pic): booting, 10 instances, 3 boot levels',
                        fill="#fff3d1")
        + "  subgraph cluster_level0 {\n" + LEVEL.format(n=0)
        + '    "store" [label="store: ready\\n1 x local\\n/0 running 10.0.0.1",'
          ' fillcolor="#dcf2de"];\n  }\n'
        + "  subgraph cluster_level1 {\n" + LEVEL.format(n=1)
        + '    "side" [label="side: booting\\non host store\\n/0 ? hôte", fillcolor="#fff3d1"];\n'
        + f'    "web" [label="web: failed\\n3 x aws (max 2), then local\\n{web}\\n... 2 more",'
          ' fillcolor="#f8d6d6"];\n  }\n'
        + "  subgraph cluster_level2 {\n" + LEVEL.format(n=2)
        + '    "here" [label="here: not recorded\\non this machine", fillcolor="#fff3d1"];\n  }\n'
        + EDGES
    )
    assert run_dot(*plan, status) == expected


@pytest.mark.parametrize(("state", "fill"), [
    ("ready", "#dcf2de"), ("failed", "#f8d6d6"), ("unhealthy", "#f8d6d6"),
    ("skipped", "#eeeeee"), ("terminated", "#eeeeee"), ("booting", "#fff3d1"),
])
def test_each_state_has_its_colour_and_six_instances_fit(plan, state, fill):
    instances = [{"index": i, "state": "running", "address": None}
                 for i in range(MAX_INSTANCE_LINES)]
    dot = run_dot(*plan, {"run": "r", "status": state,
                          "services": {"web": {"status": state, "instances": instances}}})
    lines = "\\n".join(f"/{i} running -" for i in range(6))
    assert (f'"web" [label="web: {state}\\n3 x aws (max 2), then local\\n{lines}",'
            f' fillcolor="{fill}"];') in dot
    assert "more" not in dot
    assert 'label="run r (plan pic): ' + state + ', 6 instances, 3 boot levels"' in dot


def test_a_picture_without_edges_or_exports(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "one.yml").write_text(textwrap.dedent("""\
        services:
          a: {count: 2}
    """))
    plan = load_plan("one.yml")
    graph = build_graph(plan)
    dot = plan_dot(plan, graph, boot_levels(graph))
    assert dot.endswith('    "a" [label="a\\n2 x local"];\n  }\n}\n')
    assert "->" not in dot and "exports" not in dot


def test_edge_reasons_values_only_and_a_zero_cloud_limit(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "b.sh.j2").write_text("echo {{ a.url }}\n")
    (tmp_path / "two.yml").write_text(textwrap.dedent("""\
        services:
          a:
            values: {url: x}
            clouds: [{cloud: local, max: 0}, {cloud: qemu}]
          b:
            after: [a]
            boot: b.sh.j2
    """))
    plan = load_plan("two.yml")
    graph = build_graph(plan)
    dot = plan_dot(plan, graph, boot_levels(graph))
    assert '"a" [label="a\\n1 x local (max 0), then qemu\\nexports url"];' in dot
    assert '"a" -> "b" [label="a.url, after"];' in dot
    # A graph drawn from elsewhere may have edges without reasons: no label then.
    bare = nx.DiGraph()
    bare.add_edge("a", "b")
    assert '  "a" -> "b";\n}\n' in plan_dot(plan, bare, [["a"], ["b"]])


def test_a_run_without_services_shows_each_as_not_recorded(plan):
    dot = run_dot(*plan, {"run": "r", "status": "new"})
    assert '"web" [label="web: not recorded\\n3 x aws (max 2), then local", fillcolor="#fff3d1"];' in dot
    assert 'label="run r (plan pic): new, 0 instances, 3 boot levels"' in dot
