"""Converge scenarios as data: tests/cases/converge/*.yml, one runner, in-process.

Each case is a plan (on `memory` clouds, cloudinitd.testing.memory) and a
list of steps (boot, repair, scale, check, terminate). Before a step the case
may set cloud faults, lose or crash instances, and say what each script does
(cloudinitd.testing.FakeRemote); after it, what must be true:

    services: {NAME: ready|failed|skipped|terminated}   states the step left
    ok: BOOL                      the step's overall result
    order: ["a < b"]              every call of a ended before any call of b began
    steps: [svc-0.boot, ...]      the exact calls, in start order (chains only)
    called: [svc-0.boot, ...]     the same calls, in any order
    not_called: [svc]             no call at all touched these services
    instances: {svc: {cloud: N}}  live instances per cloud, from the store
    errors: {svc: TEXT}           TEXT is in the service's error
    result: {svc: {step: S, log_tail: TEXT, log: TEXT}}
                                  the failed step (as returned and as recorded), TEXT in
                                  the log tail, TEXT in the log file both point at
    rendered: {svc-0.boot: [TEXT]} TEXT is in that script as it ran
    raises: TEXT                  the step raised an error saying TEXT
    unhealthy: [svc-0]            `check` found exactly these unhealthy
    failed_instances: {svc-0: STEP}  exactly these instances are not ok, each with the step
                                  it failed at (null: its service failed or was skipped
                                  as a whole)
    launches: {cloud: N}          provider launch calls made on that cloud, in all

Adding a scenario is adding a file; the runner never changes per case.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from cloudinitd.engine.boot import boot, start_run
from cloudinitd.engine.context import RunContext, open_run
from cloudinitd.engine.maintain import check, repair, scale
from cloudinitd.engine.outcome import RunOutcome
from cloudinitd.engine.terminate import terminate_run
from cloudinitd.errors import CloudinitdError
from cloudinitd.plan.loader import load_plan
from cloudinitd.store import Store
from cloudinitd.testing import FakeRemote, forget_clouds, memory_cloud

CASES = Path(__file__).parent / "cases" / "converge"
RUN = "case"
DEFAULT_FILES = {"boot.sh": "true\n", "ready.sh": "true\n", "terminate.sh": "true\n"}
EXPECT_KEYS = {"services", "ok", "order", "steps", "called", "not_called", "instances",
               "errors", "rendered", "raises", "unhealthy", "launches", "result",
               "failed_instances"}
STEP_KEYS = {"boot", "repair", "scale", "check", "terminate", "faults", "remote", "lose",
             "crash", "expect"}


def load_case(path: Path) -> dict[str, Any]:
    case = yaml.safe_load(path.read_text())
    assert set(case) <= {"description", "plan", "files", "steps"}, path
    for step in case["steps"]:
        assert set(step) <= STEP_KEYS, f"{path.name}: unknown step keys {set(step) - STEP_KEYS}"
        assert set(step.get("expect", {})) <= EXPECT_KEYS, f"{path.name}: unknown expect keys"
    return case


def write_plan(case: dict[str, Any], where: Path) -> Path:
    plan = {"name": "case", **case["plan"]}
    plan.setdefault("clouds", {"mem": {"provider": "memory"}})
    plan.setdefault("defaults", {})
    plan["defaults"] = {"cloud": next(iter(plan["clouds"])), "image": "img", "size": "small",
                        "ssh_user": "root", "timeout": 30, **plan["defaults"]}
    for name, text in {**DEFAULT_FILES, **case.get("files", {})}.items():
        (where / name).write_text(textwrap.dedent(text))
    path = where / "plan.yml"
    path.write_text(yaml.safe_dump(plan, sort_keys=False))
    return path


def _where(ctx: RunContext, label: str) -> tuple[str, str, int]:
    """`web-1` -> (cloud, service, index), from the store."""
    service, _, index = label.rpartition("-")
    for row in ctx.store.instances(RUN, service):
        if row.idx == int(index):
            return row.cloud, service, int(index)
    raise AssertionError(f"no live instance {label} to lose or crash")


class Runner:
    def __init__(self, home: Path, plan_path: Path):
        self.home, self.plan_path = home, plan_path
        self.store = Store(home)
        self.progress: list[tuple[str, int | None, str, str]] = []

    def context(self, fake: FakeRemote) -> RunContext:
        ctx = open_run(self.home, self.store, RUN, progress=self.shown)
        ctx.remote = fake
        return ctx

    def shown(self, service: str, index: int | None, state: str, detail: str) -> None:
        self.progress.append((service, index, state, detail))

    def step(self, step: dict[str, Any]) -> None:
        for cloud, faults in (step.get("faults") or {}).items():
            state = memory_cloud(self.home, cloud)
            state.faults.clear()
            state.faults.update(faults or {})
        fake = FakeRemote(step.get("remote"))
        if "boot" not in step:
            ctx = self.context(fake)
            for label in step.get("lose", []):
                cloud, service, index = _where(ctx, label)
                memory_cloud(self.home, cloud).lose(service, index)
            for label in step.get("crash", []):
                cloud, service, index = _where(ctx, label)
                memory_cloud(self.home, cloud).crash(service, index)
        expect = step.get("expect", {})
        del self.progress[:]
        try:
            outcome = self.act(step, fake)
        except CloudinitdError as exc:
            assert "raises" in expect, f"unexpected error: {exc}"
            assert expect["raises"] in str(exc)
            outcome = None
        else:
            assert "raises" not in expect, f"expected an error saying {expect['raises']!r}"
        self.check(expect, outcome, fake)
        if self.converged and outcome is not None:
            self.check_recorded(outcome)

    def act(self, step: dict[str, Any], fake: FakeRemote) -> Any:
        self.converged = any(k in step for k in ("boot", "repair", "scale"))
        if "boot" in step:
            plan = load_plan(self.plan_path, catalog={})
            ctx = start_run(self.home, self.store, plan, {}, RUN, progress=self.shown)
            ctx.remote = fake
            return boot(ctx)
        ctx = self.context(fake)
        if "repair" in step:
            return repair(ctx)
        if "scale" in step:
            return scale(ctx, step["scale"]["service"], step["scale"]["count"])[1]
        if "check" in step:
            return check(ctx)
        if "terminate" in step:
            return terminate_run(ctx)
        raise AssertionError(f"a step needs an action: {sorted(step)}")

    def check_recorded(self, outcome: RunOutcome) -> None:
        """What every converge step must leave, whatever the case: each service's result
        is the one recorded, logged as an event and shown last in the progress."""
        recorded = self.store.services(RUN)
        events = {(e.service, e.kind, e.message) for e in self.store.events(RUN)}
        last = {s: (state, detail) for s, i, state, detail in self.progress if i is None}
        for name, result in outcome.services.items():
            assert result.name == name, f"{name}: result names {result.name!r}"
            assert result.ok is (result.state == "ready"), result
            row = recorded[name]
            assert isinstance(result.seconds, float) and result.seconds == round(result.seconds, 2)
            # a share of the whole step's time (rounded to hundredths)
            assert 0 <= result.seconds <= outcome.seconds + 0.005, f"{name}: {result.seconds}"
            if result.state == "skipped":
                cause = row.error  # "db failed": what the progress shows too
                assert cause and result.error.endswith(f": not run: {cause}"), (result, row)
                # shown when skipped (a launch under way may still report after it)
                assert (name, None, "skipped", cause) in self.progress, self.progress
                continue
            assert (row.status, row.step, row.error) == (
                result.state, result.step, result.error), (result, row)
            assert (name, result.state, result.error or "ok") in events, events
            detail = result.error or f"{result.seconds:.1f}s"
            assert last[name] == (result.state, detail), self.progress

    def check(self, expect: dict[str, Any], outcome: Any, fake: FakeRemote) -> None:
        recorded = self.store.services(RUN)
        for name, state in (expect.get("services") or {}).items():
            # A converge's outcome names each service's state; check and terminate
            # outcomes speak of instances, so the store is asked.
            got = outcome.services[name].state if self.converged and outcome \
                else recorded[name].status
            assert got == state, f"{name}: {got} (expected {state})"
            assert recorded[name].status == state, f"{name} recorded {recorded[name]}"
        if "ok" in expect:
            assert outcome.ok is expect["ok"]
        for rule in expect.get("order", []):
            first, _, then = (part.strip() for part in rule.partition("<"))
            assert fake.finished_before(first, then), f"not {rule}: {fake.steps()}"
        if "steps" in expect:
            assert fake.steps() == expect["steps"]
        if "called" in expect:
            assert sorted(fake.steps()) == sorted(expect["called"])
        for name in expect.get("not_called", []):
            assert not [c for c in fake.calls if c.service == name], fake.steps()
        for name, per_cloud in (expect.get("instances") or {}).items():
            live: dict[str, int] = {}
            for row in self.store.instances(RUN, name):
                live[row.cloud] = live.get(row.cloud, 0) + 1
            assert live == {c: n for c, n in per_cloud.items() if n}, f"{name}: {live}"
        for name, text in (expect.get("errors") or {}).items():
            error = outcome.services[name].error or ""
            assert text in error, f"{name}: {error!r}"
        for name, want in (expect.get("result") or {}).items():
            got, row = outcome.services[name], recorded[name]
            if "step" in want:
                assert (got.step, row.step) == (want["step"], want["step"]), f"{name}: {got}"
            if "log_tail" in want:
                assert want["log_tail"] in got.log_tail, f"{name}: {got.log_tail!r}"
            if "log" in want:
                assert got.log_path and row.log_path == got.log_path, f"{name}: {got}"
                assert want["log"] in Path(got.log_path).read_text()
        for label, texts in (expect.get("rendered") or {}).items():
            scripts = [c.script for c in fake.calls if c.label == label]
            assert scripts, f"{label} never ran: {fake.steps()}"
            for text in texts:
                assert text in scripts[-1], f"{label}: {scripts[-1]!r}"
        if "failed_instances" in expect:
            got = {f"{i.service}-{i.index}": i.step for i in outcome.failed_instances}
            assert got == expect["failed_instances"], outcome.failed_instances
            for i in outcome.failed_instances:
                assert i.ok is False and i.detail, i
                service = outcome.services[i.service]
                # its service's error (failed or skipped as a whole, or the first failure
                # of the service), or its own, naming the service and the step
                assert i.detail == service.error or (
                    i.detail.startswith(f"{i.service}: ") and i.step in i.detail), i
                assert i.step == service.step or i.detail != service.error, i
                if i.step in ("boot", "ready"):  # a script's: its own log and tail
                    assert i.log_tail and i.log_path.endswith(f"-{i.index}.{i.step}.log"), i
        if "unhealthy" in expect:
            got = sorted(f"{i.service}-{i.index}" for i in outcome.failed_instances)
            assert got == sorted(expect["unhealthy"])
        for cloud, n in (expect.get("launches") or {}).items():
            assert len(memory_cloud(self.home, cloud).launches) == n


@pytest.mark.timeout(120)  # a walk that never ends (a scheduling bug) fails, not hangs
@pytest.mark.parametrize("path", sorted(CASES.glob("*.yml")), ids=lambda p: p.stem)
def test_converge_case(path: Path, tmp_path: Path) -> None:
    case = load_case(path)
    plan_dir = tmp_path / "plan"
    plan_dir.mkdir()
    home = tmp_path / "home"
    home.mkdir()
    runner = Runner(home, write_plan(case, plan_dir))
    try:
        for step in case["steps"]:
            runner.step(step)
    finally:
        forget_clouds(home)


def test_there_are_enough_cases() -> None:
    assert len(list(CASES.glob("*.yml"))) >= 25


def test_memory_cloud_entry_is_checked_by_its_own_schema(tmp_path: Path) -> None:
    """The double describes its own keys: a typo is a located error with a did-you-mean."""
    case = {"plan": {"clouds": {"mem": {"provider": "memory", "capcity": 2}},
                     "services": {"web": {"boot": "boot.sh"}}}}
    with pytest.raises(CloudinitdError) as err:
        load_plan(write_plan(case, tmp_path), catalog={})
    assert "unknown key 'capcity'" in str(err.value)
    assert "did you mean 'capacity'?" in str(err.value)


def test_clean_asks_the_host_local_kinds() -> None:
    from cloudinitd.providers import KINDS, PLUGINS, host_local_kinds

    assert host_local_kinds() == ["local", "qemu"]
    assert not PLUGINS["memory"].host_local and not KINDS["ec2"].host_local
    assert "memory" not in KINDS  # a plug-in: the built-in list stays what the README documents
