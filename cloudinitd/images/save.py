"""`cloudinitd image save RUN SERVICE[/INDEX] NAME` on any cloud whose provider saves images.

Which instance, the guest's writes flushed to its disk when the provider
asks for it (a VM's page cache is invisible to its disk file), the
provider's own `save_image`, the event in the run's history, and with
`--stop` the instance terminated through the engine's own bookkeeping.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloudinitd.errors import CloudinitdError, ProviderError, UsageError
from cloudinitd.providers.base import SaveRequest
from cloudinitd.records import Instance

Say = Callable[[str], None]


@dataclass
class Saved:
    run: str
    instance: str  # service-index
    instance_id: str
    cloud: str
    name: str
    image_id: str
    stopped: bool
    image: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def pick(store: Any, run: str, target: str) -> dict[str, Any]:
    """The store row of SERVICE[/INDEX] in `run` (exactly one)."""
    service, _, index_text = target.partition("/")
    from cloudinitd.engine.access import require_run

    require_run(store, run)  # an unknown run: exit 2 naming the runs there are
    rows = store.instances(run, service)
    if index_text:
        if not index_text.isdigit():
            raise UsageError(f"{target}: INDEX must be a number")
        rows = [r for r in rows if r.idx == int(index_text)]
    if not rows:
        there = ", ".join(f"{r.service}/{r.idx}" for r in store.instances(run))
        raise UsageError(f"run {run!r} has no instance {target}; instances: {there or 'none'}")
    if len(rows) > 1:
        raise UsageError(f"run {run!r}: {service} has {len(rows)} instances; name one as "
                         f"{service}/INDEX (indexes {', '.join(str(r.idx) for r in rows)})")
    return rows[0]


def flush_guest(home: Path, store: Any, run: str, row: Instance, say: Say) -> None:
    """`sync` on the instance over SSH (the run's key and pins); a failure is only said."""
    from cloudinitd.engine import access, execute
    from cloudinitd.engine.context import open_run

    try:
        ctx = open_run(home, store, run)
        inst = access.choose(ctx, f"{row.service}/{row.idx}")
        done = execute.run_command([inst], "sync", sudo=inst.target.user != "root", timeout=120)
        result = done.instances[0]
        if not result.ok:
            raise ProviderError((result.stderr.strip()[-200:] if result.exit is not None
                                 else result.detail) or "sync failed")
        say(f"flushed the guest's writes ({inst.label}: sync)")
    except CloudinitdError as exc:
        say(f"could not flush the guest's writes over SSH ({exc}); the image holds what its "
            "disk holds now")


def save_instance(home: Path, store: Any, run: str, target: str, name: str, *, stop: bool,
                  timeout: float, say: Say) -> Saved:
    from cloudinitd.engine.context import open_run_without_plan

    row = pick(store, run, target)
    ctx = open_run_without_plan(home, store, run)
    provider = ctx.provider(row.cloud)
    provider.check_image_name(name)
    label = f"{row.service}-{row.idx}"
    say(f"Saving {label} ({row.instance_id}) of run {run} as {name}...")
    if provider.flush_before_save:
        flush_guest(home, store, run, row, say)
    image = provider.save_image(SaveRequest(instance_id=row.instance_id, name=name, run=run,
                                            source=f"{run}/{label}", stop=stop,
                                            timeout=timeout), say)
    image_id = image.get("image_id") or name
    store.event(run, "image", f"saved {label} ({row.instance_id}) as image {name} "
                f"({image_id}) on {row.cloud}", service=row.service, index=row.idx)
    stopped = False
    if stop:
        from cloudinitd.engine.terminate import destroy_instances

        done = destroy_instances(ctx, [row], sweep=False)  # the engine's own bookkeeping
        if done.errors:
            raise ProviderError(f"image {name} saved, but {label} was not terminated: "
                                + "; ".join(done.errors))
        stopped = True
    return Saved(run=run, instance=label, instance_id=row.instance_id, cloud=row.cloud,
                 name=name, image_id=image_id, stopped=stopped, image=image)
