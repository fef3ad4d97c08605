"""The dependency graph as a picture (Graphviz DOT): of a plan, or of a recorded run.

A plan's picture shows each service's count and clouds, its boot level (a
box per level) and on each edge why it exists (`store.greeting`, `after`,
`host`). A run's picture adds each service's state and every instance's
state and address. Pure: text in, text out (`dot` draws it, in the CLI).
"""

from __future__ import annotations

import json
from typing import Any

import networkx as nx

from cloudinitd.plan.model import Plan, ServiceSpec

FONT = "DejaVu Sans"  # installed with graphviz on Debian; readable at 11-14 pt
_FILL = {"ready": "#dcf2de", "failed": "#f8d6d6", "unhealthy": "#f8d6d6",
         "skipped": "#eeeeee", "terminated": "#eeeeee"}
_PENDING_FILL = "#fff3d1"
_PLAN_FILL = "#eef2fa"
MAX_INSTANCE_LINES = 6


def _q(text: str) -> str:
    """A DOT string: JSON's escapes are DOT's (`\\n` is a centred line break)."""
    return json.dumps(text, ensure_ascii=False)


def placement(svc: ServiceSpec) -> str:
    """`3 x local`, `2 x aws (max 2), then local`, `on host web`, `on this machine`."""
    if svc.local:
        return "on this machine"
    if not svc.launches:
        return f"on host {svc.host}"
    clouds = ", then ".join(p.cloud + (f" (max {p.max})" if p.max >= 0 else "")
                            for p in svc.clouds)
    return f"{svc.count} x {clouds}"


def _edges(graph: nx.DiGraph) -> list[str]:
    out = []
    for dep, dependent in sorted(graph.edges):
        why = ", ".join(graph.edges[dep, dependent].get("reasons", []))
        out.append(f"  {_q(dep)} -> {_q(dependent)}" + (f" [label={_q(why)}]" if why else "")
                   + ";")
    return out


def _header(title: str, fill: str) -> list[str]:
    return [
        f"  graph [rankdir=LR, fontname={_q(FONT)}, fontsize=16, label={_q(title)},"
        " labelloc=t, labeljust=l, nodesep=0.35, ranksep=0.8, pad=0.3];",
        f"  node [shape=box, style=\"rounded,filled\", fillcolor={_q(fill)}, color=\"#4a5a78\","
        f" fontname={_q(FONT)}, fontsize=13, margin=\"0.25,0.12\"];",
        f"  edge [fontname={_q(FONT)}, fontsize=11, color=\"#6b7a99\", fontcolor=\"#39445c\"];",
    ]


def _levels(levels: list[list[str]], labels: dict[str, str], attrs: dict[str, str]) -> list[str]:
    out = []
    for level, names in enumerate(levels):
        out.append(f"  subgraph cluster_level{level} {{")
        out.append(f"    label={_q(f'level {level}')}; style=dashed; color=\"#b8c0d0\";"
                   " fontsize=12;")
        for name in names:
            extra = attrs.get(name, "")
            out.append(f"    {_q(name)} [label={_q(labels[name])}{extra}];")
        out.append("  }")
    return out


def plan_dot(plan: Plan, graph: nx.DiGraph, levels: list[list[str]]) -> str:
    """The plan's graph: counts, clouds, exports, levels and why each edge exists."""
    labels = {}
    for name, svc in plan.services.items():
        lines = [name, placement(svc)]
        if svc.exports or svc.values:
            lines.append("exports " + ", ".join([*svc.exports, *svc.values]))
        labels[name] = "\n".join(lines)
    total = sum(s.count for s in plan.services.values() if s.launches)
    title = (f"plan {plan.name}: {len(plan.services)} services, {total} instances,"
             f" {len(levels)} boot levels")
    body = [*_header(title, _PLAN_FILL), *_levels(levels, labels, {}), *_edges(graph)]
    return f"digraph {_q(plan.name)} {{\n" + "\n".join(body) + "\n}\n"


def run_dot(plan: Plan, graph: nx.DiGraph, levels: list[list[str]],
            status: dict[str, Any]) -> str:
    """A recorded run's graph: each service's state, its instances' states and addresses.

    `status` is `status --json`'s shape (run, plan, status, services -> status, instances).
    """
    labels, attrs = {}, {}
    services = status.get("services", {})
    for name in plan.services:
        entry = services.get(name, {})
        state = entry.get("status", "not recorded")
        lines = [f"{name}: {state}", placement(plan.services[name])]
        instances = entry.get("instances", [])
        for inst in instances[:MAX_INSTANCE_LINES]:
            lines.append(f"/{inst['index']} {inst.get('state', '?')} {inst.get('address') or '-'}")
        if len(instances) > MAX_INSTANCE_LINES:
            lines.append(f"... {len(instances) - MAX_INSTANCE_LINES} more")
        labels[name] = "\n".join(lines)
        attrs[name] = f", fillcolor={_q(_FILL.get(state, _PENDING_FILL))}"
    live = sum(len(s.get("instances", [])) for s in services.values())
    title = (f"run {status.get('run')} (plan {plan.name}): {status.get('status')},"
             f" {live} instances, {len(levels)} boot levels")
    body = [*_header(title, _PENDING_FILL), *_levels(levels, labels, attrs), *_edges(graph)]
    return f"digraph {_q(str(status.get('run')))} {{\n" + "\n".join(body) + "\n}\n"
