"""Configuring one instance: wait for SSH, render and run boot, record exports, run ready."""

from __future__ import annotations

from typing import Any

from cloudinitd import templates
from cloudinitd.engine.context import RunContext, content_hash
from cloudinitd.engine.inputs import input_key, input_parts, keep_source
from cloudinitd.errors import PlanError, RemoteError
from cloudinitd.plan.model import BUILTIN_ATTRIBUTES, SERVICE_ATTRIBUTES, ServiceSpec
from cloudinitd.records import Instance
from cloudinitd.templates import render_script

World = dict[str, list[dict[str, Any]]]


def has_scripts(svc: ServiceSpec) -> bool:
    return bool(svc.scripts)


def _render_args(ctx: RunContext, svc: ServiceSpec, index: int, world: World) -> dict[str, Any]:
    return dict(plan=ctx.plan, run=ctx.run, service=svc.name, index=index, world=world,
                extra=ctx.extras(svc))


def render_env(ctx: RunContext, svc: ServiceSpec, index: int, world: World) -> dict[str, str]:
    """The service's `env`, rendered; a value no environment can hold is refused at its line."""
    env = templates.render_env(**_render_args(ctx, svc, index, world))
    for key, value in env.items():
        if "\0" in value:
            pos = svc.pos_of(f"env.{key}")
            raise PlanError(f"service {svc.name!r}: env value {key} holds a NUL byte (at"
                            f" character {value.index(chr(0))}), which no environment or shell"
                            " can hold", pos.file if pos else None, pos.line if pos else None)
    return env


def rendered_inputs(ctx: RunContext, svc: ServiceSpec, index: int,
                    world: World) -> tuple[str | None, dict[str, str], str]:
    """The boot script and environment as they would run now, and their hash.

    The hash is what `repair` compares with the recorded one to know that a
    dependency changed an input (an address, an exported value).
    """
    world = with_values(ctx, svc, index, world)
    args = _render_args(ctx, svc, index, world)
    script = render_script(svc.scripts["boot"], **args) if "boot" in svc.scripts else None
    env = render_env(ctx, svc, index, world)
    argv = step_args(ctx, svc, "boot", index, world)
    # Arguments are inputs too (a changed address given as an argument re-runs boot).
    hashed = script if not argv or script is None else script + "\0" + "\0".join(argv)
    return script, env, content_hash(hashed, env)


def record_inputs(ctx: RunContext, svc: ServiceSpec, index: int, world: World,
                  script: str | None, env: dict[str, str]) -> None:
    """Keep what this boot was made of (keyed digests) so `diff` can say what changed."""
    from cloudinitd.graph import service_references

    # Once per command (the plan's references, the run's key); one assignment, so a
    # thread never sees half of it.
    state = ctx.__dict__.get("_input_state")
    if state is None:
        state = ctx.__dict__["_input_state"] = (service_references(ctx.plan),
                                                 input_key(ctx.run_dir))
    reads, key = state
    argv = step_args(ctx, svc, "boot", index, world).get("args", [])
    parts = input_parts(svc, reads.get(svc.name, set()), ctx.plan.vars, world, script, env,
                        argv, key)
    if "boot" in svc.scripts:  # the template text, so `diff --scripts` can show the old side
        parts["source:boot"] = keep_source(ctx.run_dir, svc.scripts["boot"].source)
    ctx.store.set_inputs(ctx.run, svc.name, index, parts)


def own_values(ctx: RunContext, svc: ServiceSpec, index: int, world: World) -> dict[str, str]:
    """The service's `values:` for this instance (rendered before its own steps)."""
    if not svc.values:
        return {}
    return templates.render_values(**_render_args(ctx, svc, index, world))


def with_values(ctx: RunContext, svc: ServiceSpec, index: int, world: World) -> World:
    """`world` where this instance already carries its values (its scripts may read them)."""
    values = own_values(ctx, svc, index, world)
    if not values:
        return world
    items = [dict(item, **values) if item.get("index") == index else item
             for item in world.get(svc.name, [])]
    return {**world, svc.name: items}


def step_args(ctx: RunContext, svc: ServiceSpec, step: str, index: int,
              world: World) -> dict[str, Any]:
    """The step's rendered `args:` and its `files:`, as run_step takes them."""
    spec = svc.scripts.get(step)
    if spec is None or not (spec.args or spec.files):
        return {}
    return {"args": templates.render_args(spec, **_render_args(ctx, svc, index, world)),
            "files": list(spec.files)}


def learn_hostname(ctx: RunContext, svc: ServiceSpec, row: Instance,
                   world: World) -> World:
    """An existing host's `hostname` is what it reports at first connect (kept in the store)."""
    target = ctx.target(svc, row)
    ctx.progress(svc.name, row.idx, "ssh", f"waiting for SSH on {row.address}")
    ctx.remote.wait_for_ssh(target, timeout=svc.timeout, service=svc.name)
    try:
        name = ctx.remote.reported_hostname(target, svc.name)
    except Exception as exc:  # a name is nice to have; the address stays
        ctx.store.event(ctx.run, "warning", f"hostname: {exc}", svc.name, row.idx)
        return world
    if not name:
        return world
    ctx.store.update_instance(ctx.run, row.cloud, row.instance_id, svc.name,
                              hostname=name)
    items = [dict(item, hostname=name) if item.get("index") == row.idx else item
             for item in world.get(svc.name, [])]
    return {**world, svc.name: items}


def configure_instance(ctx: RunContext, svc: ServiceSpec, row: Instance,
                       world: World) -> None:
    """Boot then ready on one instance; raises RemoteError naming the step."""
    index = row.idx
    if has_scripts(svc) and not svc.launches and row.hostname in (None, row.address):
        world = learn_hostname(ctx, svc, row, world)
    script, env, digest = rendered_inputs(ctx, svc, index, world)
    values = own_values(ctx, svc, index, world)
    world = with_values(ctx, svc, index, world)
    if values:  # what others read of this service, whatever its scripts do (upserted:
        # earlier exports stay until a new boot replaces them)
        ctx.store.set_attributes(ctx.run, svc.name, index, values)
    if not has_scripts(svc):
        record_inputs(ctx, svc, index, world, script, env)
        ctx.store.update_instance(ctx.run, row.cloud, row.instance_id, svc.name,
                                  configured=1, boot_hash=digest)
        return
    target = ctx.target(svc, row)
    ctx.progress(svc.name, index, "ssh", f"waiting for SSH on {row.address}")
    ctx.remote.wait_for_ssh(target, timeout=svc.timeout, service=svc.name)
    ctx.store.update_instance(ctx.run, row.cloud, row.instance_id, svc.name, configured=0)
    if script is not None:
        ctx.progress(svc.name, index, "boot", "running boot script")
        exports = ctx.remote.run_step(
            target, run=ctx.run, service=svc.name, index=index, step="boot", script=script,
            env=env, log_path=ctx.log_path(svc.name, index, "boot"), timeout=svc.timeout,
            **step_args(ctx, svc, "boot", index, world))
        exports = declared_exports(ctx, svc, index, exports)
        ctx.store.clear_attributes(ctx.run, svc.name, index)
        ctx.store.set_attributes(ctx.run, svc.name, index, {**values, **exports})
    if "ready" in svc.scripts:
        ctx.progress(svc.name, index, "ready", "running ready script")
        run_ready(ctx, svc, row, world, env, timeout=svc.timeout)
    record_inputs(ctx, svc, index, world, script, env)
    ctx.store.update_instance(ctx.run, row.cloud, row.instance_id, svc.name,
                              configured=1, boot_hash=digest)
    ctx.store.event(ctx.run, "configured", "boot and ready done", svc.name, index)


def declared_exports(ctx: RunContext, svc: ServiceSpec, index: int,
                     exports: dict[str, Any]) -> dict[str, Any]:
    """What a boot script exported, kept as data: the declared keys only.

    A built-in name (`address`, `instance_id`, ...) describes the machine and
    comes from its cloud: a script writing one fails its service, since
    dependents trust those names (a compromised node could otherwise point
    them at another machine). Undeclared keys are dropped with a warning
    event: no template can read them (the loader checks references against
    `exports`), so storing them would only keep data nobody asked for.
    """
    log_path = str(ctx.log_path(svc.name, index, "boot"))
    forged = sorted(set(exports) & (BUILTIN_ATTRIBUTES | SERVICE_ATTRIBUTES))
    if forged:
        raise RemoteError(svc.name, "boot",
                          f"boot script exported {', '.join(forged)}, built-in attribute(s)"
                          " that cloudinitd sets from the cloud; a script may not override"
                          " them (export them under another name)", log_path=log_path)
    missing = [key for key in svc.exports if key not in exports]
    if missing:
        raise RemoteError(svc.name, "boot",
                          f"boot script did not export {', '.join(missing)} (listed in"
                          " `exports`; write them to $CLOUDINITD_EXPORT)", log_path=log_path)
    undeclared = sorted(set(exports) - set(svc.exports))
    if undeclared:
        ctx.store.event(ctx.run, "warning",
                        f"ignored undeclared export(s) {', '.join(undeclared)} (not listed in"
                        " the service's `exports`)", svc.name, index)
    return {key: exports[key] for key in svc.exports}


def run_ready(ctx: RunContext, svc: ServiceSpec, row: Instance, world: World,
              env: dict[str, str] | None = None, timeout: float | None = None,
              once: bool = False) -> int:
    """The ready script, retried until it exits 0 (or once, for health checks)."""
    index = row.idx
    script = render_script(svc.scripts["ready"], **_render_args(ctx, svc, index, world))
    if env is None:
        env = render_env(ctx, svc, index, world)
    target = ctx.target(svc, row)
    log_path = ctx.log_path(svc.name, index, "ready")
    extra = step_args(ctx, svc, "ready", index, world)
    if once:
        ctx.remote.run_step(target, run=ctx.run, service=svc.name, index=index, step="ready",
                        script=script, env=env, log_path=log_path,
                        timeout=min(svc.timeout, 120.0), **extra)
        return 1
    return ctx.remote.run_ready(target, run=ctx.run, service=svc.name, index=index, step="ready",
                            script=script, env=env, log_path=log_path,
                            timeout=timeout or svc.timeout, **extra)


def run_terminate(ctx: RunContext, svc: ServiceSpec, row: Instance, world: World) -> None:
    """The terminate script, once, before the instance goes away."""
    index = row.idx
    script = render_script(svc.scripts["terminate"], **_render_args(ctx, svc, index, world))
    env = render_env(ctx, svc, index, world)
    target = ctx.target(svc, row)
    ctx.remote.wait_for_ssh(target, timeout=min(svc.timeout, 60.0), service=svc.name)
    ctx.remote.run_step(target, run=ctx.run, service=svc.name, index=index, step="terminate",
                    script=script, env=env, log_path=ctx.log_path(svc.name, index, "terminate"),
                    timeout=svc.timeout, **step_args(ctx, svc, "terminate", index, world))
