"""`boot`: a new run converged from nothing; `--dry-run`: everything rendered, nothing launched."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from cloudinitd.engine.context import Progress, RunContext, quiet, recorded_clouds
from cloudinitd.engine.converge import Converger
from cloudinitd.engine.outcome import RunOutcome
from cloudinitd.graph import boot_levels, build_graph
from cloudinitd.paths import display_path
from cloudinitd.plan.model import Plan
from cloudinitd.plan.samples import NOTES, quoted_values, sample_extra, sample_world, shown_values
from cloudinitd.schedule import dry_run_schedule
from cloudinitd.store import Store
from cloudinitd.templates import (
    is_shell_script,
    is_template,
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


def boot(ctx: RunContext) -> RunOutcome:
    return Converger(ctx).run()


def dry_run(plan: Plan, run: str = "dry-run", show_values: bool = False) -> dict[str, Any]:
    """Render every script of every instance against placeholder addresses.

    Placeholders come from the documentation range 192.0.2.0/24: they are
    printed, never contacted. `show_values`: exports and values are realistic
    samples (plan/samples.py) instead of `<svc.attr>`, so the scripts show how
    values arrive. The report ends with notes on quoting and idempotency and a
    warning for each value written inside shell quotes.
    """
    graph = build_graph(plan)
    world = sample_world(plan) if show_values else placeholder_world(plan)
    extra = sample_extra() if show_values else placeholder_extra()
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
    warnings = []
    for svc in plan.services.values():
        for script in svc.scripts.values():
            if is_template(script.path) and is_shell_script(script.path):
                warnings += [f"{display_path(script.path)}:{line}: {{{{ {expr} }}}} is inside"
                             " shell quotes, but values arrive already quoted: drop the"
                             " quotes around it (or write |safe for the raw value)"
                             for line, expr in quoted_values(script.source)]
    report = {
        "plan": plan.name,
        "levels": boot_levels(graph),
        "schedule": dry_run_schedule(graph, launching),
        "instances": rendered,
        "warnings": sorted(set(warnings)),
        "notes": NOTES,
    }
    if show_values:
        report["sample_values"] = shown_values(world, plan)
    return report
