"""Pure scheduling decisions over the dependency graph (no I/O).

The engine launches every VM at once and configures each service as soon as
its *own* dependencies are ready (Terraform walks its graph the same way),
rather than waiting for whole boot levels. The functions here decide what
may start, what must be skipped, and estimate the critical path.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Mapping
from dataclasses import dataclass

import networkx as nx

# Service states during a converge.
WAITING = "waiting"  # instances launching / not yet launched
LAUNCHED = "launched"  # instances running, configuration not started
CONFIGURING = "configuring"
READY = "ready"
FAILED = "failed"
SKIPPED = "skipped"  # a dependency failed
DONE_STATES = frozenset({READY, FAILED, SKIPPED})


def configurable(graph: nx.DiGraph, states: Mapping[str, str]) -> list[str]:
    """Services whose instances are up and whose every dependency is ready."""
    return sorted(
        name for name, state in states.items()
        if state == LAUNCHED and all(states.get(dep) == READY for dep in graph.predecessors(name))
    )


def to_skip(graph: nx.DiGraph, failed: str, states: Mapping[str, str]) -> list[str]:
    """Everything downstream of `failed` that has not finished: it cannot run now."""
    return sorted(d for d in nx.descendants(graph, failed) if states.get(d) not in DONE_STATES)


def failed_dependency(graph: nx.DiGraph, service: str, states: Mapping[str, str]) -> str | None:
    """The first failed or skipped ancestor of `service`, for messages."""
    for ancestor in nx.topological_sort(graph.subgraph(nx.ancestors(graph, service))):
        if states.get(ancestor) == FAILED:
            return ancestor
    return None


def within_reach(graph: nx.DiGraph, service: str, hops: int) -> set[str]:
    """`service` and what depends on it at most `hops` dependencies away."""
    return set(nx.single_source_shortest_path_length(graph, service, cutoff=hops))


def ssh_fanout(hosts: int, cores: int | None = None) -> int:
    """pyinfra's default fan-out: min(20 x cores, hosts, (open-file limit - 10) / 3)."""
    cores = cores or os.cpu_count() or 1
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    by_files = max(1, (soft - 10) // 3)
    return max(1, min(20 * cores, max(hosts, 1), by_files))


@dataclass(frozen=True)
class Estimate:
    """Critical-path estimate of a boot, in seconds from `boot` starting."""

    finish: dict[str, float]
    path: list[str]

    @property
    def total(self) -> float:
        return max(self.finish.values(), default=0.0)


def critical_path(graph: nx.DiGraph, vm_ready: Mapping[str, float],
                  configure: Mapping[str, float]) -> Estimate:
    """finish(s) = max(vm_ready(s), max finish(deps)) + configure(s), along the graph."""
    finish: dict[str, float] = {}
    via: dict[str, str | None] = {}
    for name in nx.topological_sort(graph):
        start, previous = vm_ready.get(name, 0.0), None
        for dep in graph.predecessors(name):
            if finish[dep] > start:
                start, previous = finish[dep], dep
        finish[name] = start + configure.get(name, 0.0)
        via[name] = previous
    path: list[str] = []
    node = max(finish, key=finish.get) if finish else None
    while node is not None:
        path.append(node)
        node = via[node]
    return Estimate(finish=finish, path=list(reversed(path)))


def dry_run_schedule(graph: nx.DiGraph, launching: Mapping[str, int]) -> list[dict]:
    """The order a boot would follow: launches at t=0, then each service after its deps.

    `launching` maps each service that creates instances to its count. Each
    entry says what a service waits for, so the user sees the real (graph,
    not level) schedule.
    """
    steps = [{"step": "launch", "service": name, "count": count}
             for name, count in sorted(launching.items()) if count]
    for level, names in enumerate(nx.topological_generations(graph)):
        for name in sorted(names):
            steps.append({
                "step": "configure",
                "service": name,
                "level": level,
                "after": sorted(graph.predecessors(name)),
                "needs_instances": name in launching,
            })
    return steps
