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


def test_failed_dependency_looks_only_at_ancestors():
    g = chain("a", "b", "c")
    g.add_edge("z", "y")
    states = {"a": s.READY, "b": s.READY, "c": s.WAITING, "y": s.WAITING, "z": s.FAILED}
    assert s.failed_dependency(g, "c", states) is None  # z failed, but is not c's ancestor
    assert s.failed_dependency(g, "y", states) == "z"


@pytest.fixture
def open_file_limit():
    """Lower this process's soft open-file limit for one test, then restore it."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)

    def lower(to: int) -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (to, hard))

    try:
        yield lower
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_fanout_is_bounded_by_the_open_file_limit(open_file_limit):
    open_file_limit(41)  # (41 - 10) // 3 = 10 connections' worth of descriptors
    assert s.ssh_fanout(500, cores=8) == 10
    open_file_limit(40)  # (40 - 10) // 3 = 10 as well: 10 of them are kept in reserve
    assert s.ssh_fanout(500, cores=8) == 10
    open_file_limit(39)
    assert s.ssh_fanout(500, cores=8) == 9
    open_file_limit(12)  # (12 - 10) // 3 = 0: still one connection at a time
    assert s.ssh_fanout(500, cores=8) == 1


def test_fanout_defaults_to_this_machines_cores():
    import os

    cores = os.cpu_count() or 1
    assert s.ssh_fanout(10_000) == 20 * cores
    assert s.ssh_fanout(10_000, cores=0) == 20 * cores


def test_critical_path_defaults_ties_and_ordering():
    g = chain("b", "a")  # b before a: the alphabetically first node finishes last
    # a's VM is ready exactly when b finishes: a waited for its VM, not for b.
    est = s.critical_path(g, vm_ready={"a": 10}, configure={"b": 10, "a": 5})
    assert est.finish == {"b": 10, "a": 15}
    assert est.path == ["a"]
    # Missing figures count as 0 s.
    est = s.critical_path(g, vm_ready={}, configure={"a": 1})
    assert est.finish == {"b": 0, "a": 1}
    assert est.total == 1
    empty = s.critical_path(nx.DiGraph(), {}, {})
    assert (empty.finish, empty.path, empty.total) == ({}, [], 0.0)


def test_dry_run_schedule_steps_are_complete():
    steps = s.dry_run_schedule(chain("a", "b"), {"a": 2, "b": 0})
    assert steps == [
        {"step": "launch", "service": "a", "count": 2},
        {"step": "configure", "service": "a", "level": 0, "after": [], "needs_instances": True},
        {"step": "configure", "service": "b", "level": 1, "after": ["a"],
         "needs_instances": True},
    ]
    assert s.dry_run_schedule(chain("a", "b"), {"a": 1})[-1]["needs_instances"] is False


@pytest.mark.parametrize(("start", "hops", "expected"), [
    ("a", 0, {"a"}),
    ("a", 1, {"a", "b", "c"}),
    ("a", 2, {"a", "b", "c", "d"}),  # d once, though two paths lead there
    ("b", 2, {"b", "d", "e"}),
    ("e", 5, {"e"}),  # nothing depends on it
    ("c", 1, {"c", "d"}),  # not upwards: a is what c depends on
])
def test_within_reach_counts_dependencies_downwards(start, hops, expected):
    g = nx.DiGraph([("a", "b"), ("a", "c"), ("b", "d"), ("c", "d"), ("d", "e")])
    assert s.within_reach(g, start, hops) == expected
