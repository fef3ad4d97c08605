"""The small directed graph that replaced networkx (cloudinitd/digraph.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cloudinitd import digraph as dg


def graph(*edges: tuple[str, str]) -> dg.DiGraph:
    g = dg.DiGraph()
    g.add_edges_from(edges)
    return g


def test_generations_ancestors_descendants():
    g = graph(("a", "b"), ("a", "c"), ("b", "d"), ("c", "d"), ("d", "e"))
    g.add_node("lone")
    assert [sorted(level) for level in dg.topological_generations(g)] == [
        ["a", "lone"], ["b", "c"], ["d"], ["e"]]
    assert dg.ancestors(g, "d") == {"a", "b", "c"}
    assert dg.descendants(g, "b") == {"d", "e"}
    assert list(dg.topological_sort(g)).index("a") < list(dg.topological_sort(g)).index("e")


def test_a_cycle_is_refused_and_found():
    g = graph(("a", "b"), ("b", "c"), ("c", "a"), ("c", "d"), ("d", "d"))
    with pytest.raises(dg.CycleError):
        list(dg.topological_generations(g))
    components = sorted(sorted(c) for c in dg.strongly_connected_components(g))
    assert components == [["a", "b", "c"], ["d"]]
    assert dg.single_source_shortest_path(g, "a")["d"] == ["a", "b", "c", "d"]
    assert g.has_edge("d", "d") and not g.has_edge("a", "c")


def test_a_long_chain_does_not_recurse():
    names = [f"s{i}" for i in range(5000)]
    g = graph(*zip(names, names[1:], strict=False))
    assert len(dg.strongly_connected_components(g)) == 5000
    assert len(list(dg.topological_generations(g))) == 5000


def test_edges_carry_attributes_and_reverse_keeps_them():
    g = dg.DiGraph()
    g.add_node("a", service="A")
    g.add_edge("a", "b", reasons=["after"])
    assert g.edges["a", "b"] == {"reasons": ["after"]} and ("a", "b") in g.edges
    assert g.nodes["a"]["service"] == "A"
    r = g.reverse()
    assert list(r.edges) == [("b", "a")] and r.edges["b", "a"]["reasons"] == ["after"]
    assert list(g.subgraph(["a"]).edges) == []


def test_booting_imports_no_networkx():
    code = ("import sys, cloudinitd.engine.boot, cloudinitd.cli.plan_commands;"
            " print('networkx' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
