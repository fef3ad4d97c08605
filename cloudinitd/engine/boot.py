"""`boot`: a new run converged from nothing; `--dry-run`: everything rendered, nothing launched."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from cloudinitd.engine.context import Progress, RunContext, quiet, recorded_clouds
from cloudinitd.engine.converge import Converger, RunResult
from cloudinitd.graph import boot_levels, build_graph
from cloudinitd.plan.model import Plan
from cloudinitd.schedule import dry_run_schedule
from cloudinitd.store import Store
from cloudinitd.templates import (
    placeholder_extra,
    placeholder_world,
    render_args,
    render_env,
    render_script,
)


def start_run(home: Path, store: Store, plan: Plan, overrides: dict[str, str],
              name: str | None, progress: Progress = quiet) -> RunContext:
    """Record the run (name, plan, overrides, clouds) and make its key, before any launch."""
    run = name or store.unique_run_name(plan.name)
    expires = time.time() + plan.lifetime if plan.lifetime else None
    store.create_run(run, plan.name, plan.path.resolve(), overrides, recorded_clouds(plan),
                     expires=expires)
    ctx = RunContext(home=home, store=store, plan=plan, run=run, progress=progress)
    ctx.keypair()
    store.event(run, "boot", f"plan {plan.path}")
    return ctx


def boot(ctx: RunContext) -> RunResult:
    return Converger(ctx).run()


def dry_run(plan: Plan, run: str = "dry-run") -> dict[str, Any]:
    """Render every script of every instance against placeholder addresses.

    Placeholders come from the documentation range 192.0.2.0/24: they are
    printed, never contacted.
    """
    graph = build_graph(plan)
    world = placeholder_world(plan)
    extra = placeholder_extra()
    launching = {name: svc.count for name, svc in plan.services.items() if svc.launches}
    rendered: list[dict[str, Any]] = []
    for name, svc in plan.services.items():
        for item in world[name]:
            args = dict(plan=plan, run=run, service=name, index=item["index"], world=world,
                        extra=extra)
            entry: dict[str, Any] = {"service": name, "index": item["index"],
                                     "address": item["address"], "scripts": {}, "env": {}}
            for step, script in svc.scripts.items():
                entry["scripts"][step] = render_script(script, **args)
                if script.args:
                    entry.setdefault("args", {})[step] = render_args(script, **args)
            entry["env"] = render_env(**args)
            rendered.append(entry)
    return {
        "plan": plan.name,
        "levels": boot_levels(graph),
        "schedule": dry_run_schedule(graph, launching),
        "instances": rendered,
    }
