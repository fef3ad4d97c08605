"""Keeping a run healthy without cron: one `watch_tick` per run and interval.

A tick, for one run (`cloudinitd watch` loops over it; `cloudinitd serve`
calls it for every run it keeps):
1. lifetime: past the run's lease end the run is terminated; a service whose
   own `lifetime` is over goes to 0 instances (dependents re-configured);
2. what a dead process left: unanswered launches resumed with their own client
   tokens, instances found by tag adopted or removed, surplus trimmed
   (maintain.py, as `repair` does), so a watcher killed mid-replacement and
   started again neither loses nor duplicates an instance;
3. health: every instance described and ready-checked (maintain.check);
4. replacement: dead or unhealthy instances of services that `preserve` are
   terminated; the converge launches their replacements on the service's
   clouds in overflow order, skipping clouds in back-off;
5. autoscale: each autoscaled service's sensor is read and its count moved
   within min..max (cooldown kept in the store);
6. one converge (launch, boot, re-configure dependents whose inputs changed),
   then the back-off of each cloud updated from this tick's launch records.
Every action is an event in the run's history. Decisions are watchpolicy.py's.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cloudinitd import watchpolicy as policy
from cloudinitd.engine.context import Progress, RunContext, open_run, open_run_without_plan, quiet
from cloudinitd.engine.converge import Converger
from cloudinitd.engine.launcher import resume_intents
from cloudinitd.engine.maintain import (
    TERMINATED_RUN_STATES,
    adopt_strays,
    check,
    refresh,
    set_count,
    trim_surplus,
)
from cloudinitd.engine.outcome import RunOutcome
from cloudinitd.engine.sensors import read_sensor
from cloudinitd.engine.terminate import destroy_instances, terminate_run
from cloudinitd.errors import CloudinitdError, PlanError, RunNotFound
from cloudinitd.host import locks
from cloudinitd.plan.model import Plan
from cloudinitd.schedule import READY
from cloudinitd.store import Store

BACKOFF_KEY = "cloud_backoff"
SCALED_KEY = "autoscaled:"  # + service: when its count last moved by a sensor


@dataclass
class Action:
    kind: str  # replace, autoscale, lifetime, resume, stray, trim, launch-failed, expired
    service: str | None
    index: int | None
    detail: str


@dataclass
class WatchReport:
    """What one tick saw and did. `state`: ok, unhealthy, terminated (before or by this
    tick), busy (another watcher holds the run), booting (left to `boot`)."""

    run: str
    state: str = "ok"
    actions: list[Action] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    readings: dict[str, list[float]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.state in ("ok", "terminated") and not self.errors

    def act(self, kind: str, detail: str, service: str | None = None,
            index: int | None = None) -> None:
        self.actions.append(Action(kind, service, index, detail))

    def as_dict(self) -> dict[str, Any]:
        return {"run": self.run, "state": self.state, "ok": self.ok,
                "actions": [asdict(a) for a in self.actions], "errors": list(self.errors),
                "readings": self.readings}


def wants_watch(plan: Plan) -> bool:
    """Whether a run of `plan` asks to be kept (`serve` watches those): something to
    preserve, a sensor to follow, or a lifetime to enforce."""
    return plan.preserve or plan.lifetime is not None or any(
        s.launches and (s.preserve or s.autoscale is not None or s.lifetime is not None)
        for s in plan.services.values())


def runs_to_watch(home: Path, store: Store, skip: set[str] = frozenset()) -> list[str]:
    """The recorded runs whose plans ask to be kept (`serve` ticks each of them).

    Runs that ended, runs still booting and runs whose plan no longer loads are
    left out (`status`/`repair` say why); `skip` names runs kept another way
    (the service's groups).
    """
    wanted = []
    for row in store.runs():
        name = row.name
        if name in skip or row.status in (*TERMINATED_RUN_STATES, "booting"):
            continue
        try:
            plan = open_run(home, store, name).plan
        except CloudinitdError:
            continue
        if wants_watch(plan):
            wanted.append(name)
    return wanted


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[bool]:
    """One watcher per run at a time (`watch` and `serve` may both be asked to)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with locks.try_exclusive(run_dir / "watch.lock") as held:
        yield held


def watch_tick(home: Path, run_name: str, *, now: float | None = None,
               progress: Progress | None = None, store: Store | None = None,
               remote: Any = None) -> WatchReport:
    """Check one run once and repair what its plan asks to keep (see the module text).

    `now` stands for the clock in decisions (lifetime, cooldown, back-off);
    `remote` replaces the SSH layer (cloudinitd.testing.FakeRemote in tests).
    Raises what opening the run raises (RunNotFound, PlanError); a converge
    interrupted by Ctrl-C raises converge.Interrupted after its launches settle.
    """
    store = store or Store(home)
    report = WatchReport(run_name)
    row = store.run(run_name)
    with run_lock(store.run_dir(run_name)) as mine:
        if not mine:
            report.state = "busy"
            return report
        now = time.time() if now is None else now
        if row.status in TERMINATED_RUN_STATES:
            report.state = "terminated"
            return report
        if row.status == "booting":  # `boot` is at work (or died: `repair` settles it)
            report.state = "booting"
            return report
        if row.expires and row.expires <= now:
            _end_run(home, store, run_name, report, progress, remote, "the run's lifetime")
            return report
        ctx = open_run(home, store, run_name, progress=progress or quiet)
        if remote is not None:
            ctx.remote = remote
        _tick(ctx, report, now)
    return report


def _end_run(home: Path, store: Store, run: str, report: WatchReport,
             progress: Progress | None, remote: Any, why: str) -> None:
    try:
        ctx = open_run(home, store, run, progress=progress or quiet)
    except PlanError:  # the plan is gone: no scripts, every instance still goes
        ctx = open_run_without_plan(home, store, run, progress=progress or quiet)
    if remote is not None:
        ctx.remote = remote
    store.event(run, "lifetime", f"{why} is over: terminating the run")
    # The clouds' own leases may have ended instances already: no terminate script
    # waits for a host that is gone.
    with contextlib.suppress(CloudinitdError):
        refresh(ctx)
    result = terminate_run(ctx)
    report.act("expired", f"{why} is over: {len(result.removed)} instance(s) terminated")
    report.errors += result.errors
    report.state = "terminated"


def _tick(ctx: RunContext, report: WatchReport, now: float) -> None:
    created = float(ctx.store.run(ctx.run).created)
    launching = {n: s for n, s in ctx.plan.services.items() if s.launches}
    refresh(ctx)  # first: instances a lease already ended get no terminate script
    ended = _expire_services(ctx, report, created, now, launching)
    if launching and ended == set(launching):
        _end_run(ctx.home, ctx.store, ctx.run, report, ctx.progress, ctx.remote,
                 "every service's lifetime")
        return
    for svc in launching.values():
        if resume_intents(ctx, svc):
            report.act("resume", "finished a launch a stopped process left", svc.name)
    refresh(ctx)
    for iid in adopt_strays(ctx):
        report.act("stray", f"{iid}: not wanted, terminated")
    trimmed = trim_surplus(ctx)
    for gone in trimmed.removed:
        report.act("trim", f"{gone.instance_id} over the count", gone.service, gone.index)
    report.errors += trimmed.errors
    health = check(ctx)
    kept = {n for n, s in launching.items() if (s.preserve or s.autoscale) and n not in ended}
    _replace(ctx, report, health, kept)
    _autoscale(ctx, report, now, ended)
    unfixed = [i for i in health.instances if not i.ok and i.service not in kept]
    for item in unfixed:
        report.act("left", f"{item.detail} (not preserved; `cloudinitd repair` replaces it)",
                   item.service, item.index)
    if _needs_converge(ctx, report, health, kept):
        _converge(ctx, report, set(launching) - kept, now)
    if unfixed or report.errors:
        report.state = "unhealthy"


def _expire_services(ctx: RunContext, report: WatchReport, created: float, now: float,
                     launching: dict[str, Any]) -> set[str]:
    """Services past their own lifetime go to 0 (and stay there); returns their names."""
    ended: set[str] = set()
    for name, svc in launching.items():
        end = policy.expiry(created, svc.lifetime)
        if end is None or now < end:
            continue
        ended.add(name)
        if ctx.desired_count(svc) == 0:
            continue
        ctx.store.event(ctx.run, "lifetime", f"{name}: lifetime over, 0 instances", name)
        removed = set_count(ctx, name, 0)
        report.act("lifetime", f"{len(removed.removed)} instance(s) terminated", name)
        report.errors += removed.errors
    return ended


def _replace(ctx: RunContext, report: WatchReport, health: RunOutcome, kept: set[str]) -> None:
    """Dead (error, gone) or unhealthy instances of kept services: the dead and unhealthy
    ones are terminated here, and the converge launches every empty slot."""
    rows = {(r.service, r.idx): r
            for r in ctx.store.instances(ctx.run, live_only=False) if r.state != "terminated"}
    seen = {(i.service, i.index): policy.Seen(i.service, i.index, i.state, i.ok, i.detail)
            for i in health.instances}
    for key, row in rows.items():  # check() lists only live ones: a dead one is `missing`
        if row.state == "error":
            seen[key] = policy.Seen(row.service, row.idx, "error", False)
    victims = []
    for item in policy.to_replace(seen.values(), kept):
        ctx.store.event(ctx.run, "replace", f"{item.reason}: replacing it", item.service,
                        item.index)
        report.act("replace", item.reason, item.service, item.index)
        if (item.service, item.index) in rows:
            victims.append(rows[(item.service, item.index)])
    report.errors += destroy_instances(ctx, victims, sweep=False).errors


def _autoscale(ctx: RunContext, report: WatchReport, now: float, ended: set[str]) -> None:
    for name, svc in ctx.plan.services.items():
        spec = svc.autoscale
        if spec is None or not svc.launches or name in ended:  # a lease over stays over
            continue
        readings = read_sensor(ctx, svc)
        report.readings[name] = readings.values
        for problem in readings.errors:
            ctx.store.event(ctx.run, "warning", problem, name)
        current = ctx.desired_count(svc)
        last = ctx.store.watch_state(ctx.run, SCALED_KEY + name)
        decision = policy.decide_scale(spec, current, readings.values, last, now)
        if not decision.changes(current):
            continue
        detail = f"{current} -> {decision.count}: {decision.reason}"
        ctx.store.event(ctx.run, "autoscale", detail, name)
        report.act("autoscale", detail, name)
        removed = set_count(ctx, name, decision.count)
        report.errors += removed.errors
        ctx.store.set_watch_state(ctx.run, SCALED_KEY + name, now)


def _needs_converge(ctx: RunContext, report: WatchReport, health: RunOutcome,
                    kept: set[str]) -> bool:
    """Converge when something changed, a kept service lacks an instance, or a service
    is not ready (a tick before was stopped half-way)."""
    if any(a.kind in ("replace", "autoscale", "lifetime", "resume", "trim", "stray")
           for a in report.actions):
        return True
    if any(i.state == "missing" and i.service in kept for i in health.instances):
        return True
    if ctx.store.run(ctx.run).status == "interrupted":  # a check stopped half-way
        return True
    # A service that does not preserve stays as it is (its failed boot is not re-run
    # every interval); the others are brought back to ready.
    statuses = ctx.store.services(ctx.run)
    return any(name not in statuses or statuses[name].status != READY
               for name, svc in ctx.plan.services.items()
               if name in kept or not svc.launches)


def _converge(ctx: RunContext, report: WatchReport, hold: set[str], now: float) -> None:
    backoff = {cloud: policy.CloudHealth(**h) for cloud, h in
               ctx.store.watch_state(ctx.run, BACKOFF_KEY, {}).items()}
    ctx.avoid_clouds = policy.avoided(backoff, now)
    for cloud in sorted(ctx.avoid_clouds):
        report.act("backoff", f"{cloud}: skipped after {backoff[cloud].failures} failed"
                              " launch(es) in a row")
    before = max((launch.id for launch in ctx.store.launches(ctx.run)), default=0)
    try:
        result = Converger(ctx, hold=hold).run()
    finally:
        launches = [launch for launch in ctx.store.launches(ctx.run) if launch.id > before]
        for launch in launches:
            if launch.status in ("failed", "capacity"):
                ctx.store.event(ctx.run, "launch-failed", f"{launch.cloud}:"
                                f" {launch.status}", launch.service)
                report.act("launch-failed", f"{launch.cloud}: {launch.status}",
                           launch.service)
        backoff = policy.after_launches(backoff, [(x.cloud, x.status) for x in launches],
                                        now)
        ctx.store.set_watch_state(ctx.run, BACKOFF_KEY,
                                  {c: asdict(h) for c, h in backoff.items()})
        ctx.avoid_clouds = set()
    for failure in result.failed:
        report.errors.append(failure.error or f"{failure.name}: failed")


def watch_loop(home: Path, run_name: str, *, interval: float, stop: threading.Event,
               on_report: Callable[[WatchReport], None] | None = None,
               ticking: threading.Event | None = None, progress: Progress | None = None,
               store: Store | None = None, remote: Any = None) -> WatchReport | None:
    """Tick every `interval` seconds until `stop` is set or the run has ended.

    `ticking` is set while a tick runs: a signal handler that sees it raises
    KeyboardInterrupt, so the converge stops launching and settles what is under
    way (converge.Interrupted); otherwise it only sets `stop`. Known errors
    (a cloud down, the plan file gone) are reported per tick and the loop goes on.
    """
    store = store or Store(home)
    store.run(run_name)  # an unknown run is an error now, not at the first tick
    store.event(run_name, "watch", f"watching every {interval:g}s")
    last: WatchReport | None = None
    try:
        while not stop.is_set():
            if ticking is not None:
                ticking.set()
            try:
                last = watch_tick(home, run_name, progress=progress, store=store, remote=remote)
            except RunNotFound:
                raise
            except CloudinitdError as exc:
                last = WatchReport(run_name, state="unhealthy", errors=[str(exc)])
            finally:
                if ticking is not None:
                    ticking.clear()
            if on_report is not None:
                on_report(last)
            if last.state == "terminated":
                break
            stop.wait(interval)
    finally:
        with contextlib.suppress(Exception):
            store.event(run_name, "watch", "stopped")
    return last
