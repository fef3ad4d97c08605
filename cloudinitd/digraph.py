"""A small directed graph: the part of networkx the dependency graph uses.

A plan's graph has at most a few thousand services and edges; networkx
cost 13 MB of memory and ~80 ms of every command's start-up for the dozen
operations below. Nodes keep insertion order, so every walk here is
deterministic. The functions take any object with `predecessors`,
`successors` and iteration over nodes (a networkx DiGraph works too).

Pure: no I/O.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable, Iterator
from typing import Any


class CycleError(ValueError):
    """A topological order was asked of a graph with a cycle."""


class DiGraph:
    """Nodes with attributes, edges with attributes; insertion-ordered."""

    def __init__(self) -> None:
        self._nodes: dict[Hashable, dict[str, Any]] = {}
        self._succ: dict[Hashable, dict[Hashable, dict[str, Any]]] = {}
        self._pred: dict[Hashable, dict[Hashable, dict[str, Any]]] = {}

    def add_node(self, node: Hashable, **attrs: Any) -> None:
        if node not in self._nodes:
            self._nodes[node] = {}
            self._succ[node] = {}
            self._pred[node] = {}
        self._nodes[node].update(attrs)

    def add_edge(self, u: Hashable, v: Hashable, **attrs: Any) -> None:
        self.add_node(u)
        self.add_node(v)
        data = self._succ[u].setdefault(v, {})
        data.update(attrs)
        self._pred[v][u] = data

    def add_edges_from(self, edges: Iterable[tuple[Hashable, Hashable]]) -> None:
        for u, v in edges:
            self.add_edge(u, v)

    def add_nodes_from(self, nodes: Iterable[Hashable]) -> None:
        for node in nodes:
            self.add_node(node)

    def has_edge(self, u: Hashable, v: Hashable) -> bool:
        return v in self._succ.get(u, {})

    def predecessors(self, node: Hashable) -> Iterator[Hashable]:
        return iter(self._pred[node])

    def successors(self, node: Hashable) -> Iterator[Hashable]:
        return iter(self._succ[node])

    @property
    def nodes(self) -> dict[Hashable, dict[str, Any]]:
        """node -> its attributes (`graph.nodes[name]["service"]`)."""
        return self._nodes

    @property
    def edges(self) -> EdgeView:
        """(u, v) pairs; `graph.edges[u, v]` is the edge's attributes."""
        return EdgeView(self._succ)

    def reverse(self) -> DiGraph:
        out = DiGraph()
        for node, attrs in self._nodes.items():
            out.add_node(node, **attrs)
        for u, v in self.edges:
            out.add_edge(v, u, **self._succ[u][v])
        return out

    def subgraph(self, nodes: Iterable[Hashable]) -> DiGraph:
        keep = set(nodes)
        out = DiGraph()
        for node, attrs in self._nodes.items():
            if node in keep:
                out.add_node(node, **attrs)
        for u, v in self.edges:
            if u in keep and v in keep:
                out.add_edge(u, v, **self._succ[u][v])
        return out

    def __contains__(self, node: object) -> bool:
        return node in self._nodes

    def __iter__(self) -> Iterator[Hashable]:
        return iter(self._nodes)

    def __len__(self) -> int:
        return len(self._nodes)


class EdgeView:
    def __init__(self, succ: dict[Hashable, dict[Hashable, dict[str, Any]]]):
        self._succ = succ

    def __iter__(self) -> Iterator[tuple[Hashable, Hashable]]:
        return ((u, v) for u, succ in self._succ.items() for v in succ)

    def __len__(self) -> int:
        return sum(len(succ) for succ in self._succ.values())

    def __contains__(self, edge: object) -> bool:
        u, v = edge  # type: ignore[misc]
        return v in self._succ.get(u, {})

    def __getitem__(self, edge: tuple[Hashable, Hashable]) -> dict[str, Any]:
        u, v = edge
        return self._succ[u][v]


def topological_generations(graph: Any) -> Iterator[list[Hashable]]:
    """Kahn's levels: nodes with no predecessors, then those whose all are placed, ..."""
    indegree = {node: sum(1 for _ in graph.predecessors(node)) for node in graph}
    level = [node for node, n in indegree.items() if n == 0]
    placed = 0
    while level:
        placed += len(level)
        yield level
        following = []
        for node in level:
            for child in graph.successors(node):
                indegree[child] -= 1
                if indegree[child] == 0:
                    following.append(child)
        level = following
    if placed != len(indegree):
        raise CycleError("the graph has a cycle")


def topological_sort(graph: Any) -> Iterator[Hashable]:
    for level in topological_generations(graph):
        yield from level


def _reach(graph: Any, start: Hashable, step: str) -> set[Hashable]:
    seen: set[Hashable] = set()
    todo = [start]
    while todo:
        for nxt in getattr(graph, step)(todo.pop()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    seen.discard(start)
    return seen


def descendants(graph: Any, node: Hashable) -> set[Hashable]:
    return _reach(graph, node, "successors")


def ancestors(graph: Any, node: Hashable) -> set[Hashable]:
    return _reach(graph, node, "predecessors")


def single_source_shortest_path(graph: Any, start: Hashable) -> dict[Hashable, list[Hashable]]:
    """Breadth first: node -> a shortest path [start, ..., node] (edges followed forward)."""
    paths = {start: [start]}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for nxt in graph.successors(node):
            if nxt not in paths:
                paths[nxt] = [*paths[node], nxt]
                queue.append(nxt)
    return paths


def strongly_connected_components(graph: Any) -> list[set[Hashable]]:
    """Tarjan's algorithm, iterative (a long chain must not hit the recursion limit)."""
    index: dict[Hashable, int] = {}
    low: dict[Hashable, int] = {}
    on_stack: set[Hashable] = set()
    stack: list[Hashable] = []
    out: list[set[Hashable]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph.successors(root)))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph.successors(child))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                out.append(component)
    return out
