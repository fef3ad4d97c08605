"""Bring a run to its plan: launch what is missing, configure what needs it, in graph order.

`boot` is a converge of an empty run; `repair` and `scale` converge an
existing one. Launches go to a small cloud-call pool at once; each service
is configured in the SSH pool as soon as its own instances run and its own
dependencies are ready. A failure stops only what depends on it.
"""

from __future__ import annotations

import contextlib
import resource
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import replace

from cloudinitd import schedule
from cloudinitd.engine.configure import configure_instance, has_scripts, rendered_inputs
from cloudinitd.engine.context import RunContext, free_indexes
from cloudinitd.engine.launcher import Stopped, launch_service, launch_static
from cloudinitd.engine.outcome import (
    Interrupted,
    RunOutcome,
    ServiceOutcome,
    live_instances,
)
from cloudinitd.engine.outcome import failure as _failure
from cloudinitd.graph import boot_levels, build_graph
from cloudinitd.host.waiting import wait_until
from cloudinitd.records import Instance, Launch
from cloudinitd.remote.session import SshTarget
from cloudinitd.schedule import CONFIGURING, FAILED, LAUNCHED, READY, SKIPPED, WAITING

CLOUD_POOL = 8  # concurrent cloud API calls (launch + wait) across services
# Connections opened ahead of need at once (see _prewarm_targets). Two: a key
# exchange is CPU work under the GIL, and the steps on the critical path share
# it. Measured on the bench DAG (40 services, 2 cores; a loopback connection
# ~25 ms since remote/tcp.py): the converge's overhead over its critical path
# was 0.38-0.54 s with 8, 0.32-0.43 with 4, 0.26-0.37 with 2, 0.26-0.32 with 1;
# one would leave a WAN's connection latency unhidden.
WARM_POOL = 2
# How far ahead of the work under way hosts are connected: a service's hosts are
# warmed once a service at most this many dependencies before it has begun, not
# all at the start, where every early step on the critical path would share the
# cores with every key exchange. Two, not one: a step of a fraction of a second
# on a distant host must not wait for its own connection.
WARM_AHEAD = 2
# After Ctrl-C: how long to wait for cloud calls already under way to answer
# (so every instance they made is recorded). A second Ctrl-C stops waiting.
SETTLE_TIMEOUT = 120.0


def ssh_pool_size(hosts: int) -> int:
    """One SSH worker per host, as far as open files allow (~3 fds per connection).

    Not capped by cores: workers mostly wait on the network and on scripts, and
    a cap below the host count makes the hosts above it wait for a second wave.
    The soft open-files limit is raised to the hard one first (no privilege needed).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return max(1, min(max(hosts, 1), (soft - 50) // 3))


def _done(name: str, state: str = READY, error: str | None = None) -> ServiceOutcome:
    return ServiceOutcome(name, state, state == READY, None, error)


class Converger:
    def __init__(self, ctx: RunContext, force: set[str] | None = None,
                 unhealthy: set[tuple[str, int]] | None = None, hold: set[str] | None = None):
        self.ctx = ctx
        # Services whose missing instances are not launched now (`watch` on services
        # that do not preserve): what they have is still configured as needed.
        self.hold = hold or set()
        self.graph = build_graph(ctx.plan)
        self.force = force or set()  # services to re-configure whatever their inputs
        self.unhealthy = unhealthy or set()  # (service, index) pairs that failed a check
        self.states: dict[str, str] = {}
        self.results: dict[str, ServiceOutcome] = {}
        # The instance whose step failed its service, with its own step and log tail.
        self.own: dict[tuple[str, int], ServiceOutcome] = {}
        self.started: dict[str, float] = {}
        self.pending: dict[Future, tuple[str, str, int | None]] = {}
        self.stop = threading.Event()  # set by Ctrl-C: make no new cloud call
        # Launches a dead process left unanswered: not ours to wait for after Ctrl-C.
        self.inherited = {launch.client_token for launch in ctx.store.launches(ctx.run)
                          if launch.status == "requested"}

    def _unanswered(self) -> list[Launch]:
        return [launch for launch in self.ctx.store.launches(self.ctx.run)
                if launch.status == "requested"
                and launch.client_token not in self.inherited]

    def _settle(self) -> list[Launch]:
        """Wait until every cloud call this process made has answered and been recorded."""
        with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl-C: stop waiting
            wait_until(lambda: not self._unanswered(), SETTLE_TIMEOUT, interval=0.05)
        return self._unanswered()

    # decisions -------------------------------------------------------------
    def _needs_configure(self, name: str, row: Instance, world: dict,
                         was_ready: bool) -> bool:
        if not row.configured or name in self.force or not was_ready:
            return True
        if (name, row.idx) in self.unhealthy:
            return True
        _, _, digest = rendered_inputs(self.ctx, self.ctx.plan.services[name], row.idx, world)
        return digest != row.boot_hash

    def _set(self, name: str, state: str, detail: str = "") -> None:
        self.states[name] = state
        self.ctx.progress(name, None, state, detail)

    # the walk ----------------------------------------------------------------
    def run(self) -> RunOutcome:
        ctx, t0 = self.ctx, time.monotonic()
        hosts = sum(max(1, ctx.desired_count(s)) for s in ctx.plan.services.values())
        cloud_pool = ThreadPoolExecutor(CLOUD_POOL, thread_name_prefix="cloud")
        ssh_pool = ThreadPoolExecutor(ssh_pool_size(hosts), thread_name_prefix="ssh")
        warm = self._prewarm_targets()
        # Few threads (WARM_POOL): each one started is also a wait of the main
        # thread (~8 ms on a busy machine) before anything is handed out.
        warm_pool = ThreadPoolExecutor(max(1, min(len(warm), WARM_POOL)),
                                       thread_name_prefix="warm")
        begun: set[str] = set()  # services whose successors were looked at for warm-ups
        try:
            for name, svc in ctx.plan.services.items():
                self.started[name] = time.monotonic()
                if not svc.launches or name in self.hold:
                    self._set(name, LAUNCHED)
                    continue
                live = {r.idx for r in ctx.store.instances(ctx.run, name)}
                missing = free_indexes(live, ctx.desired_count(svc))
                fut = cloud_pool.submit(launch_service, ctx, svc, self.stop)
                self.pending[fut] = (name, "launch", None)
                self._set(name, WAITING, f"launching {len(missing)}" if missing else "")
            # Run until nothing is in flight: siblings of a failed instance finish
            # (and write their logs) before the summary is printed.
            while True:
                self._start_ready_services(ssh_pool)
                # After the hand-out: what can start now starts first.
                for target, name in self._warm_due(warm, begun):
                    warm_pool.submit(self._warm, target, name)
                if not self.pending:
                    break
                done, _ = wait(list(self.pending), return_when=FIRST_COMPLETED)
                for fut in done:
                    self._collect(fut)
            for name, state in self.states.items():
                if state not in schedule.DONE_STATES:  # cannot happen unless the graph lies
                    self._finish(name, ServiceOutcome(name, FAILED, False, "schedule",
                                                      f"{name}: never became configurable"))
        except KeyboardInterrupt:
            self.stop.set()
            for fut in self.pending:
                fut.cancel()
            unsettled = self._settle()
            ctx.store.update_run(ctx.run, status="interrupted")
            ctx.store.event(ctx.run, "interrupted", "Ctrl-C: launching stopped")
            raise Interrupted(ctx.run, live_instances(ctx), len(unsettled)) from None
        finally:
            cloud_pool.shutdown(wait=False, cancel_futures=True)
            ssh_pool.shutdown(wait=False, cancel_futures=True)
            warm_pool.shutdown(wait=False, cancel_futures=True)
        ok = all(s.state == READY for s in self.results.values())
        ctx.store.update_run(ctx.run, status="ready" if ok else "failed")
        return self._outcome(time.monotonic() - t0)

    def _outcome(self, seconds: float) -> RunOutcome:
        """Each service with its live instances; a failed instance with its own step."""
        whole = {n for n, s in self.results.items()
                 if s.state == FAILED and not any(k[0] == n for k in self.own)}
        instances = live_instances(self.ctx, self.results, self.own, whole)
        services = {n: replace(s, instances=tuple(i for i in instances if i.service == n))
                    for n, s in self.results.items()}
        return RunOutcome(self.ctx.run, services, instances, seconds=seconds)

    def _warm(self, target: SshTarget, name: str) -> bool:
        """Connect and probe ahead of need, unless `name` can no longer run.

        Connecting early runs nothing of the plan's (the probe only reads
        `$HOME` and the host's name; the host key is pinned exactly as the
        step's own first connection would); a service already skipped (its
        dependency failed) or stopped (Ctrl-C) is not connected to at all.
        """
        if self.stop.is_set() or self.states.get(name) in schedule.DONE_STATES:
            return False
        return bool(self.ctx.remote.prewarm(target, name))

    def _warm_due(self, warm: list[tuple[SshTarget, str]],
                  begun: set[str]) -> list[tuple[SshTarget, str]]:
        """The warm-ups due now, taken out of `warm`: hosts of services at most
        WARM_AHEAD dependencies after one that has begun (configuring or done)."""
        near: set[str] = set()
        for name, state in self.states.items():
            if name not in begun and state not in (WAITING, LAUNCHED):
                begun.add(name)
                near |= schedule.within_reach(self.graph, name, WARM_AHEAD)
        due = [(target, name) for target, name in warm if name in near]
        warm[:] = [(target, name) for target, name in warm if name not in near]
        return due

    def _prewarm_targets(self) -> list[tuple[SshTarget, str]]:
        """Existing hosts of services that must wait for dependencies: to connect ahead.

        Their addresses are known before anything runs, so the key exchange
        happens while the dependencies work, not on the critical path. Nearest
        first (by boot level); `_warm_due` hands each out when the work comes
        within WARM_AHEAD dependencies of it.
        """
        ctx, out, seen = self.ctx, [], set()
        if not hasattr(ctx.remote, "prewarm"):  # a test double connects nowhere ahead of need
            return out
        recorded = ctx.store.services(ctx.run)
        level = {name: i for i, names in enumerate(boot_levels(self.graph))
                 for name in names}
        for name, svc in sorted(ctx.plan.services.items(), key=lambda item: level[item[0]]):
            if (svc.launches or svc.host in ctx.plan.services or not has_scripts(svc)
                    or not any(True for _ in self.graph.predecessors(name))
                    or (name in recorded and recorded[name].status == READY
                        and name not in self.force)):
                continue
            addresses = [h.address for h in svc.hosts] if svc.hosts else [svc.host]
            for idx, address in enumerate(addresses):
                try:
                    target = ctx.target_at(svc, idx, address)
                except Exception:  # noqa: BLE001 (the service's own step reports it)
                    continue
                if not isinstance(target, SshTarget):  # a `local: true` step connects nowhere
                    continue
                if target.key not in seen:
                    seen.add(target.key)
                    out.append((target, name))
        return out

    def _start_ready_services(self, ssh_pool: ThreadPoolExecutor) -> None:
        ctx = self.ctx
        while True:
            ready = schedule.configurable(self.graph, self.states)
            if not ready:
                return
            # One read of the run's world and service rows for all services ready now
            # (not one per service: that made the main thread's reads grow as n^2).
            failed_static: set[str] = set()
            for name in ready:
                svc = ctx.plan.services[name]
                if not svc.launches:
                    try:
                        launch_static(ctx, svc)
                    except Exception as exc:  # a vanished host service
                        self._finish(name, _failure(name, exc, "render"))
                        failed_static.add(name)
            try:
                world = ctx.world()
                recorded_all = ctx.store.services(ctx.run)
            except Exception as exc:  # a render error in what the world holds
                for name in ready:
                    if name not in failed_static:
                        self._finish(name, _failure(name, exc, "render"))
                continue
            for name in ready:
                if name in failed_static:
                    continue
                svc = ctx.plan.services[name]
                if "home" in ctx.uses.get(name, ()):
                    try:  # the one effect of rendering's inputs, before any render reads them
                        ctx.start_home_share(svc)
                    except Exception as exc:
                        self._finish(name, _failure(name, exc, "configure"))
                        continue
                try:
                    was_ready = name in recorded_all and recorded_all[name].status == READY
                    rows = [r for r in ctx.store.instances(ctx.run, name)
                            if self._needs_configure(name, r, world, was_ready)]
                except Exception as exc:  # a render error, a vanished host service
                    self._finish(name, _failure(name, exc, "render"))
                    continue
                if not rows:
                    self._finish(name, _done(name))
                    continue
                self._set(name, CONFIGURING, f"{len(rows)} instance(s)")
                ctx.store.set_service(ctx.run, name, CONFIGURING, step="boot")
                for row in rows:
                    fut = ssh_pool.submit(configure_instance, ctx, svc, row, world)
                    self.pending[fut] = (name, "configure", row.idx)

    def _collect(self, fut: Future) -> None:
        name, kind, index = self.pending.pop(fut)
        exc = fut.exception()
        if self.states.get(name) in schedule.DONE_STATES:
            if exc is not None and index is not None and not isinstance(exc, Stopped):
                self.own[(name, index)] = _failure(name, exc, kind)  # a sibling failed too
            return
        if isinstance(exc, Stopped):
            return
        if exc is not None:
            # Siblings of a failed instance still finish; the service is failed once.
            failed = _failure(name, exc, kind)
            if index is not None:
                self.own[(name, index)] = failed
            self._finish(name, failed)
            return
        if kind == "launch":
            self._set(name, LAUNCHED)
        elif not any(n == name for n, _, _ in self.pending.values()):
            self._finish(name, _done(name))

    def _finish(self, name: str, result: ServiceOutcome) -> None:
        ctx = self.ctx
        result = replace(result, seconds=round(
            time.monotonic() - self.started.get(name, time.monotonic()), 2))
        self.results[name] = result
        self._set(name, result.state, result.error or f"{result.seconds:.1f}s")
        skipped: list[str] = []
        with ctx.store.transaction():  # one commit per state change of a service
            ctx.store.set_service(ctx.run, name, result.state, step=result.step,
                                  error=result.error, log_path=result.log_path)
            ctx.store.event(ctx.run, result.state, result.error or "ok", name)
            if result.state == FAILED:
                for dep in schedule.to_skip(self.graph, name, self.states):
                    self.results[dep] = _done(dep, SKIPPED, f"{dep}: not run: {name} failed")
                    self.states[dep] = SKIPPED
                    ctx.store.set_service(ctx.run, dep, SKIPPED, error=f"{name} failed")
                    skipped.append(dep)
        for dep in skipped:
            ctx.progress(dep, None, SKIPPED, f"{name} failed")
