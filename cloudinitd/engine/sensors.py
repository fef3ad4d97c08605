"""Reading an autoscaled service's sensor: a templated step that prints one number.

It runs on each running, configured instance of the service (over SSH, in the
step's private folder, like any step), or once on this machine when the plan
says `local: true` inside `autoscale:` (plans are untrusted: nothing runs here
unless the plan declares it). The number is the last line the script prints;
a small wrapper hands it back through $CLOUDINITD_EXPORT, so the sensor needs
no cloudinitd conventions.
"""

from __future__ import annotations

import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from cloudinitd import templates
from cloudinitd.engine.configure import render_env
from cloudinitd.engine.context import RunContext
from cloudinitd.plan.model import ServiceSpec
from cloudinitd.providers.base import RUNNING
from cloudinitd.remote import LocalTarget
from cloudinitd.watchpolicy import parse_reading

SENSOR_TIMEOUT = 60.0  # seconds per reading, at most (and never more than the step timeout)


@dataclass
class Readings:
    values: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def wrap(script: str) -> str:
    """A shell step that runs `script` (any interpreter, by its #! line) and exports the
    last line it printed as `value`."""
    mark = f"CIDSENSOR_{secrets.token_hex(8)}"
    return (
        "#!/bin/sh\n"
        f"cat > ./sensor.run <<'{mark}'\n{script.rstrip(chr(10))}\n{mark}\n"
        "chmod 700 ./sensor.run\n"
        'out=$(./sensor.run "$@") || exit $?\n'
        'printf \'value=%s\\n\' "$(printf \'%s\\n\' "$out" | sed \'/^[[:space:]]*$/d\''
        ' | tail -n 1)" > "$CLOUDINITD_EXPORT"\n'
    )


def _read_one(ctx: RunContext, svc: ServiceSpec, index: int,
              world: dict[str, list[dict[str, Any]]], target: Any) -> float:
    spec = svc.autoscale
    assert spec is not None
    args = dict(plan=ctx.plan, run=ctx.run, service=svc.name, index=index, world=world,
                extra=ctx.extras(svc))
    script = wrap(templates.render_script(spec.sensor, **args))
    argv = templates.render_args(spec.sensor, **args) if spec.sensor.args else []
    exports = ctx.remote.run_step(
        target, run=ctx.run, service=svc.name, index=index, step="sensor", script=script,
        env=render_env(ctx, svc, index, world), log_path=ctx.log_path(svc.name, index, "sensor"),
        timeout=min(svc.timeout, SENSOR_TIMEOUT), args=argv)
    return parse_reading(exports.get("value", ""))


def read_sensor(ctx: RunContext, svc: ServiceSpec) -> Readings:
    """One reading per running, configured instance (or one here, for `local: true`)."""
    spec = svc.autoscale
    out = Readings()
    if spec is None:
        return out
    world = ctx.world()
    rows = [r for r in ctx.store.instances(ctx.run, svc.name)
            if r.state == RUNNING and r.configured]
    if spec.local:
        jobs = [(0, LocalTarget(root=ctx.run_dir / "local", label=f"{svc.name}-sensor"))]
    else:
        jobs = [(row.idx, ctx.target(svc, row)) for row in rows]
    if not jobs:
        return out
    with ThreadPoolExecutor(min(len(jobs), 16), thread_name_prefix="sensor") as pool:
        futures = [(index, pool.submit(_read_one, ctx, svc, index, world, target))
                   for index, target in jobs]
        for index, fut in futures:
            try:
                out.values.append(fut.result())
            except Exception as exc:  # noqa: BLE001 (one instance's reading, reported)
                out.errors.append(f"{svc.name}-{index}: sensor: {exc}")
    return out
