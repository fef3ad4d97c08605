"""What a `reload` of an edited plan would do to a run, worked out without doing it.

`plan_diff(recorded, plan, ...)` compares the run as the store knows it
(`RecordedRun`, read once by `read_run`) with a newly loaded plan, the way
`repair` after a reload would act: the plan's counts win (scale overrides
are dropped), surplus instances go (last cloud, highest index first), missing
ones are launched (overflow order), and an instance is re-configured when its
boot inputs no longer hash as recorded. Each re-configured instance names the
inputs that changed (engine/inputs.py). Nothing is launched, written or
started: templates render in the sandbox against the recorded world, and a
plan that uses `home` renders with the share as recorded (no sshd is started).
"""

from __future__ import annotations

import difflib
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cloudinitd import overflow
from cloudinitd.engine.configure import rendered_inputs, step_args, with_values
from cloudinitd.engine.context import free_indexes
from cloudinitd.engine.inputs import changed_parts, input_parts, kept_source
from cloudinitd.graph import build_graph, service_references
from cloudinitd.plan.model import Plan, ServiceSpec
from cloudinitd.records import Instance
from cloudinitd.schedule import READY
from cloudinitd.store import Store

World = dict[str, list[dict[str, Any]]]
NEW_ADDRESS = "(new)"  # what dependents would read of an instance not launched yet


@dataclass
class RecordedRun:
    """What the store knows of a run: everything `plan_diff` compares against."""

    run: str
    vars: dict[str, Any]
    counts: dict[str, int]
    statuses: dict[str, str]
    instances: list[Instance]
    attributes: dict[tuple[str, int], dict[str, Any]]
    inputs: dict[tuple[str, int], dict[str, str]]
    key: bytes = b""
    run_dir: Path | None = None


def read_run(store: Store, run: str, key: bytes = b"") -> RecordedRun:
    """The run's record, read only."""
    row = store.run(run)
    return RecordedRun(run=run, vars=row.vars, counts=row.counts,
                       statuses={n: s.status for n, s in store.services(run).items()},
                       instances=store.instances(run), attributes=store.attributes(run),
                       inputs=store.inputs(run), key=key, run_dir=store.run_dir(run))


@dataclass
class Reconfigure:
    index: int
    why: list[str]
    certain: bool = True  # False: only if a dependency's new boot changes what it exports
    script_diff: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"index": self.index, "why": self.why, "certain": self.certain}
        if self.script_diff is not None:
            out["script_diff"] = self.script_diff
        return out


@dataclass
class ServiceDiff:
    name: str
    state: str  # added, removed, changed, unchanged
    count_before: int
    count_after: int
    added: dict[str, list[int]] = field(default_factory=dict)  # cloud -> indexes
    removed: dict[str, list[int]] = field(default_factory=dict)
    reconfigure: list[Reconfigure] = field(default_factory=list)
    dropped_override: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"state": self.state, "count_before": self.count_before,
                "count_after": self.count_after, "added": self.added, "removed": self.removed,
                "reconfigure": [r.as_dict() for r in self.reconfigure],
                "dropped_scale_override": self.dropped_override}


@dataclass
class RunDiff:
    run: str
    plan: str
    services: dict[str, ServiceDiff]
    vars_changed: list[str]
    left_running: dict[str, int]  # services no longer in the plan: instances reload leaves

    @property
    def changes(self) -> bool:
        return bool(self.left_running) or any(
            s.state != "unchanged" or s.dropped_override is not None
            for s in self.services.values())

    def as_dict(self) -> dict[str, Any]:
        return {"run": self.run, "plan": self.plan, "changes": self.changes,
                "launches": sum(len(ix) for s in self.services.values()
                                for ix in s.added.values()),
                "terminates": sum(len(ix) for s in self.services.values()
                                  for ix in s.removed.values()),
                "vars_changed": self.vars_changed, "left_running": self.left_running,
                "services": {n: s.as_dict() for n, s in self.services.items()}}


@dataclass
class _Renderer:
    """Just what `rendered_inputs` reads of a RunContext: the plan, the run, the extras."""

    plan: Plan
    run: str
    extra: dict[str, Any] | None
    uses: dict[str, set[str]]

    def extras(self, service: ServiceSpec) -> dict[str, Any] | None:
        return self.extra if "home" in self.uses.get(service.name, ()) else None


def _placement(svc: ServiceSpec, rows: list[Instance]) -> tuple[dict, dict]:
    """(added, removed) cloud -> indexes, as trim_surplus then launch_missing would do."""
    current = Counter(r.cloud for r in rows)
    removed: dict[str, list[int]] = {}
    for cloud, n in overflow.scale_down(svc.clouds, dict(current), svc.count).items():
        on_cloud = sorted((r.idx for r in rows if r.cloud == cloud), reverse=True)
        removed[cloud] = sorted(on_cloud[:n])
    gone = {i for ix in removed.values() for i in ix}
    have = {r.idx for r in rows} - gone
    missing = free_indexes(have, svc.count)
    added: dict[str, list[int]] = {}
    left = Counter(r.cloud for r in rows if r.idx not in gone)
    adds = overflow.scale_up(svc.clouds, dict(left), len(have) + len(missing))
    for cloud, n in adds.items():
        added[cloud], missing = missing[:n], missing[n:]
    if missing:  # every cloud at its max: reload would fail for these
        added["(no room)"] = missing
    return added, removed


def _world(plan: Plan, rec: RecordedRun, changes: dict[str, tuple[dict, dict]]) -> World:
    """The world dependents would see after the launches and removals (exports as recorded)."""
    world: World = {name: [] for name in plan.services}
    for row in rec.instances:
        name = row.service
        if name not in world:
            continue
        _, removed = changes.get(name, ({}, {}))
        if row.idx in removed.get(row.cloud, []):
            continue
        item = dict(rec.attributes.get((name, row.idx), {}))
        item |= {"address": row.address, "private_address": row.private_address
                 or row.address, "hostname": row.hostname,
                 "instance_id": row.instance_id, "cloud": row.cloud, "index": row.idx,
                 "name": name}
        world[name].append(item)
    for name, (added, _) in changes.items():
        for cloud, indexes in added.items():
            for i in indexes:
                svc = plan.services[name]
                item = {attr: f"<{name}.{attr} after boot>" for attr in svc.exports}
                item |= {"address": NEW_ADDRESS, "private_address": NEW_ADDRESS,
                         "hostname": f"{name}-{i}", "instance_id": NEW_ADDRESS,
                         "cloud": cloud, "index": i, "name": name}
                world[name].append(item)
    for items in world.values():
        items.sort(key=lambda item: item["index"])
    return world


def _script_diff(rec: RecordedRun, plan: Plan, render: _Renderer, svc: ServiceSpec, index: int,
                 world: World, new_script: str | None) -> str:
    """Unified diff of the boot script: the recorded template with the recorded values, then
    the new one with the new values (neither run: rendered here only)."""
    old_world = _world(plan, rec, {})
    old_text = ""
    source = kept_source(rec.run_dir, rec.inputs.get((svc.name, index), {}).get("source:boot")) \
        if rec.run_dir else None
    if source is not None and "boot" in svc.scripts:
        old_svc = replace(svc, scripts={**svc.scripts,
                                        "boot": replace(svc.scripts["boot"], source=source)})
        old_plan = replace(plan, services={**plan.services, svc.name: old_svc})
        old_render = replace(render, plan=old_plan)
        try:
            old_text = rendered_inputs(old_render, old_svc, index, old_world)[0] or ""
        except Exception as exc:  # the old template may no longer render against the new plan
            old_text = f"(the recorded script does not render any more: {exc})\n"
    elif source is None:
        old_text = "(no recorded script text for this instance)\n"
    label = f"{svc.name}/{index} boot"
    new_text = new_script or ""
    # The home share's private key renders into scripts that mount it: never shown.
    key = (render.extra or {}).get("home", {}).get("key")
    if key:
        old_text, new_text = (t.replace(key, "<home.key: not shown>") for t in (old_text,
                                                                                 new_text))
    return "".join(difflib.unified_diff(old_text.splitlines(keepends=True),
                                        new_text.splitlines(keepends=True),
                                        f"{label} (as configured)", f"{label} (after reload)"))


def plan_diff(rec: RecordedRun, plan: Plan, extra: dict[str, Any] | None = None,
              scripts: bool = False) -> RunDiff:
    """What `reload PLAN --name RUN` would do to the recorded run; nothing is done."""
    from cloudinitd.graph import context_uses

    graph = build_graph(plan)
    reads = service_references(plan)
    render = _Renderer(plan, rec.run, extra, context_uses(plan))
    rows_of: dict[str, list[Instance]] = {}
    for row in rec.instances:
        rows_of.setdefault(row.service, []).append(row)
    changes: dict[str, tuple[dict, dict]] = {}
    out: dict[str, ServiceDiff] = {}
    for name, svc in plan.services.items():
        rows = rows_of.get(name, [])
        if svc.launches:
            changes[name] = _placement(svc, rows)
        elif not rows:
            changes[name] = ({"host": [0]}, {})
        after = svc.count if svc.launches else 1
        out[name] = ServiceDiff(name, "added" if not rows else "unchanged", len(rows), after,
                                *changes.get(name, ({}, {})))
        if name in rec.counts:
            out[name].dropped_override = int(rec.counts[name])
    world = _world(plan, rec, changes)
    for name, svc in plan.services.items():
        entry = out[name]
        gone = {i for ix in entry.removed.values() for i in ix}
        for row in sorted(rows_of.get(name, []), key=lambda r: r.idx):
            if row.idx in gone:
                continue
            script, env, digest = rendered_inputs(render, svc, row.idx, world)
            why: list[str] = []
            if not row.configured:
                why = ["never finished configuring"]
            elif rec.statuses.get(name) != READY:  # as the converge decides
                why = [f"service is {rec.statuses.get(name, 'not recorded')}:"
                       " repair re-runs it"]
            elif digest != row.boot_hash:
                full = with_values(render, svc, row.idx, world)
                argv = step_args(render, svc, "boot", row.idx, full).get("args", [])
                new = input_parts(svc, reads.get(name, set()), plan.vars, full, script, env,
                                  argv, rec.key)
                old = rec.inputs.get((name, row.idx))
                why = changed_parts(old, new) or ["inputs (not recorded which: configured"
                                                  " before cloudinitd kept them)"]
            if why:
                item = Reconfigure(row.idx, why)
                if scripts:
                    item.script_diff = _script_diff(rec, plan, render, svc, row.idx,
                                                    world, script)
                entry.reconfigure.append(item)
        if entry.state == "unchanged" and (entry.added or entry.removed or entry.reconfigure):
            entry.state = "changed"
    _knock_on(plan, graph, reads, out)
    vars_changed = sorted(k for k in set(rec.vars) | set(plan.vars)
                          if k in rec.vars and str(plan.vars.get(k)) != str(rec.vars[k]))
    left = Counter(r.service for r in rec.instances if r.service not in plan.services)
    return RunDiff(rec.run, plan.name, out, vars_changed, dict(sorted(left.items())))


def _knock_on(plan: Plan, graph: Any, reads: dict[str, set[tuple[str, str | None]]],
              out: dict[str, ServiceDiff]) -> None:
    """Dependents of a re-booted service that read its exports: re-configured if those change.

    Their new values are known only after that boot runs, so these are marked uncertain.
    """
    import networkx as nx

    for name in nx.topological_sort(graph):
        entry = out[name]
        touched = bool(entry.reconfigure or entry.added)
        if not touched or not plan.services[name].exports:
            continue
        exports = set(plan.services[name].exports)
        for dependent in graph.successors(name):
            used = sorted(f"{name}.{attr}" for target, attr in reads.get(dependent, set())
                          if target == name and attr in exports)
            dep = out[dependent]
            if not used or dep.state in ("added",):
                continue
            certain = {r.index for r in dep.reconfigure}
            gone = {i for ix in dep.removed.values() for i in ix}
            for i in range(dep.count_after):
                if i in certain or i in gone or any(i in ix for ix in dep.added.values()):
                    continue
                dep.reconfigure.append(Reconfigure(i, [f"{u} if its new boot changes it"
                                                       for u in used], certain=False))
            dep.reconfigure.sort(key=lambda r: r.index)
            if dep.state == "unchanged" and dep.reconfigure:
                dep.state = "changed"
