"""The loop of `cloudinitd serve`: every group held at its desired capacity.

`reconcile_group` is the one place the service asks the engine to act on a
group (today: `maintain.repair`, which resumes a dead process's unanswered
launches with their own client tokens, adopts or removes strays, terminates
dead instances and launches their replacements in overflow order); the
per-run watcher is not used for groups (a group's run starts as `booting`,
which the watcher leaves to `repair`). `Reconciler` runs it for every group
each interval and, for every other run whose plan asks to be kept
(`preserve`, `autoscale`, `lifetime`: engine.watch.runs_to_watch), one
`watch_tick`; never two passes at once for one run, in a few daemon threads,
so a slow cloud does not hold up the others.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cloudinitd.engine.context import open_run, open_run_without_plan
from cloudinitd.engine.maintain import refresh, repair
from cloudinitd.engine.terminate import terminate_run
from cloudinitd.engine.watch import runs_to_watch, watch_tick
from cloudinitd.errors import CloudinitdError, PlanError, RunNotFound, one_line
from cloudinitd.providers.base import RUNNING
from cloudinitd.service.groups import SERVICE, plan_path
from cloudinitd.service.state import DELETING, Group, ServiceState
from cloudinitd.store import Store

_log = logging.getLogger("cloudinitd.service")

MAX_BACKOFF = 300.0  # seconds between attempts on a group that keeps failing
WORKERS = 4


def reconcile_group(home: Path, store: Store, run: str, desired: int) -> str:
    """One pass over one group's run: `steady`, `repaired` or `failed`.

    The desired capacity becomes the run's count for the service (as `scale`
    records it), so `status` shows it. Nothing is done (and nothing recorded)
    while every wanted instance is running and no launch is unanswered.
    """
    ctx = open_run(home, store, run)
    counts = store.run(run).counts
    if counts.get(SERVICE) != desired:
        counts[SERVICE] = desired
        store.update_run(run, counts=counts)
        store.event(run, "scale", f"{SERVICE} -> {desired} (desired capacity)", SERVICE)
    rows = refresh(ctx)
    unanswered = any(launch.status == "requested" for launch in store.launches(run))
    steady = (len(rows) == desired and all(r.state == RUNNING for r in rows)
              and not unanswered and store.run(run).status == "ready")
    if steady:
        return "steady"
    return "repaired" if repair(ctx).ok else "failed"


def delete_group(home: Path, store: Store, run: str) -> bool:
    """Terminate the group's instances (found by tag too); True once none is left."""
    try:
        ctx = open_run(home, store, run)
    except RunNotFound:
        return True  # the run was never recorded: nothing was launched
    except PlanError:
        ctx = open_run_without_plan(home, store, run)
    return terminate_run(ctx).ok


class Reconciler:
    """Background reconciliation of every group; `stop()` waits for passes under way."""

    def __init__(self, home: Path, store: Store, state: ServiceState, interval: float,
                 remote: Any = None):
        self.home, self.store, self.state, self.interval = home, store, state, interval
        self.remote = remote  # the SSH seam of watched runs (cloudinitd.testing in tests)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._busy: dict[str, threading.Thread] = {}
        self._failures: dict[str, tuple[int, float]] = {}  # run -> (failures, next try)
        self._slots = threading.BoundedSemaphore(WORKERS)
        self._lock = threading.Lock()
        self._requests = 0  # wake() calls so far: a pass that saw a change ends with a tick
        self._thread = threading.Thread(target=self._loop, name="reconcile", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self, run: str | None = None) -> None:
        """A request changed a group: look at it now, not at the next interval (nor after
        its back-off). A pass under way is followed by another one."""
        with self._lock:
            self._requests += 1
            if run is not None:
                self._failures.pop(run, None)
        self._wake.set()

    def stop(self, grace: float) -> bool:
        """No new pass; wait up to `grace` seconds for passes under way. True if all ended.

        A pass still running when the process exits is cut like a crash: its
        launches were recorded before they were made and the next start resumes them.
        """
        self._stop.set()
        self._wake.set()
        deadline = time.monotonic() + grace
        if self._thread.ident is not None:  # started (a test may call tick() alone)
            self._thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            busy = list(self._busy.values())
        for worker in busy:
            worker.join(max(0.0, deadline - time.monotonic()))
        return not any(w.is_alive() for w in busy)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # the loop must outlive any one bad pass
                _log.exception("reconcile tick failed")
            self._wake.wait(self.interval)
            self._wake.clear()

    def tick(self) -> None:
        """Start a pass for every group, then every watched run, not in one and not
        backing off."""
        groups = self.state.groups()
        passes: list[tuple[str, Callable[[], bool]]] = [
            (group.run, functools.partial(self._group_pass, group)) for group in groups]
        try:
            watched = runs_to_watch(self.home, self.store, skip={g.run for g in groups})
        except CloudinitdError as exc:
            _log.warning("listing the runs to watch: %s", one_line(str(exc)))
            watched = []
        passes += [(run, functools.partial(self._watch_pass, run)) for run in watched]
        now = time.monotonic()
        for run, work in passes:
            if self._stop.is_set():
                return
            with self._lock:
                if run in self._busy:
                    continue
                _, next_try = self._failures.get(run, (0, 0.0))
                if now < next_try:
                    continue
                if not self._slots.acquire(blocking=False):
                    return  # all workers busy: the rest at the next tick
                worker = threading.Thread(target=self._pass, args=(run, work),
                                          name=f"reconcile-{run}", daemon=True)
                self._busy[run] = worker
            worker.start()

    def _watch_pass(self, run: str) -> bool:
        report = watch_tick(self.home, run, store=self.store, remote=self.remote)
        for action in report.actions:
            _log.info("run %s: %s %s", run, action.kind, action.detail)
        for error in report.errors:
            _log.warning("run %s: %s", run, one_line(error))
        return report.ok or report.state in ("busy", "booting")

    def _group_pass(self, group: Group) -> bool:
        if group.status == DELETING:
            ok = delete_group(self.home, self.store, group.run)
            if ok:
                # The plan file goes first: once the group is gone from the state,
                # nothing of it may remain (delete_group copes with a missing plan).
                plan_path(self.home, group.run).unlink(missing_ok=True)
                self.state.remove_group(group.run)
                _log.info("group %s/%s deleted (run %s)", group.owner, group.name, group.run)
            return ok
        outcome = reconcile_group(self.home, self.store, group.run, group.desired)
        if outcome != "steady":
            _log.info("group %s/%s: %s", group.owner, group.name, outcome)
        return outcome != "failed"

    def _pass(self, run: str, work: Callable[[], bool]) -> None:
        ok = False
        requests = self._requests
        try:
            ok = work()
        except CloudinitdError as exc:
            _log.warning("%s: %s", run, one_line(str(exc)))
        except Exception:
            _log.exception("%s: pass failed", run)
        finally:
            with self._lock:
                if ok:
                    self._failures.pop(run, None)
                else:  # back off: interval, 2x, 4x ... up to MAX_BACKOFF
                    n = self._failures.get(run, (0, 0.0))[0] + 1
                    delay = min(MAX_BACKOFF, self.interval * 2 ** (n - 1))
                    self._failures[run] = (n, time.monotonic() + delay)
                self._busy.pop(run, None)
            self._slots.release()
            if self._requests != requests:
                self._wake.set()  # a request came while this pass ran on older values
