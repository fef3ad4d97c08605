"""Pure scheduling decisions, table-driven."""

from __future__ import annotations

import networkx as nx
import pytest

from cloudinitd import schedule as s


def diamond() -> nx.DiGraph:
    g = nx.DiGraph()
    g.add_edges_from([("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")])
    return g


@pytest.mark.parametrize("states, expected", [
    ({"a": s.LAUNCHED, "b": s.LAUNCHED, "c": s.LAUNCHED, "d": s.LAUNCHED}, ["a"]),
    ({"a": s.READY, "b": s.LAUNCHED, "c": s.WAITING, "d": s.LAUNCHED}, ["b"]),
    ({"a": s.READY, "b": s.READY, "c": s.CONFIGURING, "d": s.LAUNCHED}, []),
    ({"a": s.READY, "b": s.READY, "c": s.READY, "d": s.LAUNCHED}, ["d"]),
])
def test_configurable_follows_own_dependencies_not_levels(states, expected):
    assert s.configurable(diamond(), states) == expected


def test_failure_skips_only_descendants():
    states = {"a": s.READY, "b": s.FAILED, "c": s.CONFIGURING, "d": s.WAITING}
    assert s.to_skip(diamond(), "b", states) == ["d"]
    assert s.failed_dependency(diamond(), "d", states) == "b"


def test_critical_path_is_max_of_vm_and_dependencies():
    g = diamond()
    est = s.critical_path(g, vm_ready={"a": 10, "b": 10, "c": 40, "d": 10},
                          configure={"a": 5, "b": 5, "c": 5, "d": 5})
    # a: 10+5=15; b: max(10,15)+5=20; c: max(40,15)+5=45; d: max(10,45)+5=50
    assert est.finish == {"a": 15, "b": 20, "c": 45, "d": 50}
    assert est.path == ["c", "d"]
    assert est.total == 50


def test_fanout_is_bounded_by_hosts_cores_and_files():
    assert s.ssh_fanout(3, cores=2) == 3
    assert s.ssh_fanout(500, cores=2) == 40
    assert s.ssh_fanout(0, cores=2) == 1


def test_dry_run_schedule_launches_first_then_walks_the_graph():
    steps = s.dry_run_schedule(diamond(), {"a": 1, "d": 3})
    assert steps[:2] == [{"step": "launch", "service": "a", "count": 1},
                         {"step": "launch", "service": "d", "count": 3}]
    d = next(x for x in steps if x["step"] == "configure" and x["service"] == "d")
    assert d["after"] == ["b", "c"] and d["level"] == 2


def chain(*names: str) -> nx.DiGraph:
    g = nx.DiGraph()
    g.add_edges_from(zip(names, names[1:], strict=False))
    return g


def test_failure_skips_the_whole_chain_below_not_just_children():
    g = chain("a", "b", "c", "d")
    g.add_edge("x", "c")  # c also waits on an unrelated, finished service
    states = {"a": s.FAILED, "b": s.LAUNCHED, "c": s.WAITING, "d": s.LAUNCHED, "x": s.READY}
    assert s.to_skip(g, "a", states) == ["b", "c", "d"]
    # Grandchildren name the failed ancestor, not their skipped parent.
    states.update(b=s.SKIPPED, c=s.SKIPPED)
    assert s.failed_dependency(g, "d", states) == "a"
    assert s.failed_dependency(g, "x", states) is None


def test_skip_leaves_finished_services_alone():
    g = chain("a", "b", "c")
    for done in (s.READY, s.FAILED, s.SKIPPED):
        assert s.to_skip(g, "a", {"a": s.FAILED, "b": done, "c": s.CONFIGURING}) == ["c"]
