"""`watch` in-process: the memory provider and the fake remote (cloudinitd.testing).

Each test boots a run on `memory` clouds, breaks something (an instance lost,
crashed, failing its health check, a cloud refusing launches, a watcher that
died inside a launch), calls `watch_tick` with a chosen clock, and checks
what the run, the clouds and the history hold afterwards.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from cloudinitd.engine.boot import boot, start_run
from cloudinitd.engine.launcher import _request
from cloudinitd.engine.watch import watch_tick
from cloudinitd.plan.loader import load_plan
from cloudinitd.store import Store
from cloudinitd.testing import FakeRemote, forget_clouds, memory_cloud

RUN = "w"
PLAN = """
name: watched
clouds:
  a: {provider: memory}
  b: {provider: memory}
defaults: {cloud: a, image: img, timeout: 30}
services:
  web:
    count: 2
    preserve: true
    boot: boot.sh
    ready: ready.sh
  lb:
    boot: lb.sh.j2
  batch:
    count: 1
    boot: boot.sh
"""
FILES = {"boot.sh": "true\n", "ready.sh": "true\n",
         "lb.sh.j2": "{% for w in web.instances %}echo {{ w.address }}\n{% endfor %}\n",
         "sensor.sh": "cat /tmp/load\n"}


class Harness:
    def __init__(self, tmp_path: Path, plan: str = PLAN, remote: dict | None = None,
                 files: dict[str, str] | None = None, fake: type[FakeRemote] = FakeRemote):
        self.home = tmp_path / "home"
        folder = tmp_path / "plan"
        folder.mkdir()
        for name, text in {**FILES, **(files or {})}.items():
            (folder / name).write_text(text)
        (folder / "plan.yml").write_text(textwrap.dedent(plan))
        self.store = Store(self.home)
        self.remote = fake(remote or {})
        ctx = start_run(self.home, self.store, load_plan(folder / "plan.yml"), {}, RUN)
        ctx.remote = self.remote
        assert boot(ctx).ok
        self.created = self.store.run(RUN).created

    def cloud(self, name: str = "a"):
        return memory_cloud(self.home, name)

    def tick(self, at: float = 1.0):
        return watch_tick(self.home, RUN, now=self.created + at, store=self.store,
                          remote=self.remote)

    def live(self, service: str) -> dict[int, str]:
        rows = self.store.instances(RUN, service)
        assert len({r.idx for r in rows}) == len(rows), f"two instances on one index: {rows}"
        return {r.idx: r.instance_id for r in rows}

    def cloud_live(self, service: str) -> list[str]:
        return sorted(i.instance_id for c in ("a", "b") for i in self.cloud(c).live()
                      if i.service == service)

    def events(self, kind: str) -> list[dict]:
        return [e for e in self.store.events(RUN) if e.kind == kind]

    def boots(self, label: str) -> int:
        return self.remote.steps().count(f"{label}.boot")


@pytest.fixture
def harness(tmp_path):
    made: list[Harness] = []

    def make(**kw) -> Harness:
        made.append(Harness(tmp_path, **kw))
        return made[-1]

    yield make
    for h in made:
        forget_clouds(h.home)


def test_a_crashed_preserved_instance_is_replaced_and_its_dependent_reconfigured(harness):
    h = harness()
    before = h.live("web")
    lb_boots = h.boots("lb-0")
    dead = h.cloud().crash("web", 1)
    report = h.tick()
    assert report.ok and report.state == "ok", report
    assert [(a.service, a.index) for a in report.actions if a.kind == "replace"] == [("web", 1)]
    after = h.live("web")
    assert after[0] == before[0] and after[1] != dead
    assert dead in h.cloud().terminated
    assert h.cloud_live("web") == sorted(after.values())
    assert h.boots("lb-0") == lb_boots + 1, "lb's input (web's addresses) changed"
    assert [e.idx for e in h.events("replace")] == [1]
    again = h.tick(2)
    assert again.actions == [] and h.live("web") == after


def test_a_lost_instance_comes_back_and_an_unhealthy_one_is_replaced(harness):
    h = harness()
    first = h.live("web")
    h.cloud().lose("web", 1)
    h.remote.behaviour["web-0"] = {"ready": "fail"}  # its health check fails from now on
    report = h.tick()
    replaced = {a.index: a.detail for a in report.actions if a.kind == "replace"}
    assert set(replaced) == {0, 1} and "ready script failed" in replaced[0], report.actions
    assert "gone" in replaced[1]
    h.remote.behaviour["web-0"]["ready"] = "ok"
    h.tick(2)
    now = h.live("web")
    assert set(now) == {0, 1} and now[0] != first[0] and now[1] != first[1]
    assert len(h.cloud_live("web")) == 2


def test_a_service_that_does_not_preserve_is_left_as_it_is(harness):
    h = harness()
    launches = len(h.cloud().launches)
    h.cloud().crash("batch", 0)
    report = h.tick()
    assert report.state == "unhealthy" and not report.ok
    assert [(a.kind, a.service) for a in report.actions] == [("left", "batch")]
    assert len(h.cloud().launches) == launches
    assert h.live("batch") == {}


def test_run_level_preserve_applies_to_every_service_that_does_not_say(harness):
    h = harness(plan=PLAN.replace("name: watched", "name: watched\npreserve: true"))
    h.cloud().crash("batch", 0)
    report = h.tick()
    assert [(a.kind, a.service) for a in report.actions] == [("replace", "batch")]
    assert set(h.live("batch")) == {0}


def test_lifetime_of_the_run_terminates_it(harness):
    h = harness(plan=PLAN.replace("name: watched", "name: watched\nlifetime: 1h"))
    assert h.tick(3599).state == "ok"
    report = h.tick(3601)
    assert report.state == "terminated" and report.actions[0].kind == "expired"
    assert h.store.run(RUN).status == "terminated"
    assert h.cloud().live() == []
    assert h.events("lifetime")
    assert h.tick(3700).state == "terminated"


def test_a_service_lifetime_ends_that_service_only(harness):
    h = harness(plan=PLAN.replace("    count: 1\n    boot: boot.sh",
                                  "    count: 1\n    lifetime: 10m\n    boot: boot.sh"))
    report = h.tick(601)
    assert [(a.kind, a.service) for a in report.actions] == [("lifetime", "batch")]
    assert h.live("batch") == {} and len(h.live("web")) == 2
    assert h.store.run(RUN).status != "terminated"
    assert h.tick(700).actions == []


AUTOSCALED = PLAN.replace("""    count: 2
    preserve: true""", """    count: 2
    autoscale:
      min: 1
      max: 4
      sensor: sensor.sh
      thresholds: {above: 80, below: 20, step: 1}
      cooldown: 60s""")


def _load(h: Harness, value: float) -> None:
    h.remote.behaviour["web"] = {"sensor": {"exports": {"value": str(value)}}}


def test_a_sensor_above_its_threshold_grows_then_below_shrinks(harness):
    h = harness(plan=AUTOSCALED)
    lb = h.boots("lb-0")
    _load(h, 90)
    report = h.tick(1)
    assert report.readings == {"web": [90.0, 90.0]}
    assert [a.detail for a in report.actions if a.kind == "autoscale"] == \
        ["2 -> 3: mean 90 of 2 reading(s) above 80"]
    assert len(h.live("web")) == 3 and h.boots("lb-0") == lb + 1
    assert h.tick(30).actions == [], "inside the cooldown nothing moves"
    h.tick(100)
    h.tick(200)
    assert len(h.live("web")) == 4, "max 4"
    assert h.tick(300).actions == []
    _load(h, 5)
    for t in (400, 500, 600, 700):
        h.tick(t)
    assert len(h.live("web")) == 1, "min 1"
    assert len(h.cloud_live("web")) == 1
    assert [e.message.split(":")[0] for e in h.events("autoscale")] == \
        ["2 -> 3", "3 -> 4", "4 -> 3", "3 -> 2", "2 -> 1"]


def test_a_target_sensor_asks_for_the_count_that_meets_it(harness):
    h = harness(plan=AUTOSCALED.replace("thresholds: {above: 80, below: 20, step: 1}",
                                        "target: 50"))
    _load(h, 75)  # 2 x 75 / 50 = 3
    h.tick(1)
    assert len(h.live("web")) == 3


def test_a_failing_sensor_moves_nothing_and_is_reported(harness):
    h = harness(plan=AUTOSCALED)
    h.remote.behaviour["web"] = {"sensor": {"exports": {"value": "lots"}}}
    report = h.tick(1)
    assert report.readings == {"web": []}
    assert len(h.live("web")) == 2
    assert any("not a number" in e.message for e in h.events("warning"))


TWO_CLOUDS = PLAN.replace("""    count: 2
    preserve: true""", """    count: 2
    preserve: true
    clouds: [{cloud: a}, {cloud: b}]""")


def test_a_failing_cloud_is_backed_off_and_the_replacement_overflows(harness):
    h = harness(plan=TWO_CLOUDS)
    h.cloud("a").faults["fail_launch"] = "quota exceeded"
    h.cloud("a").crash("web", 1)
    first = h.tick(1)
    assert not first.ok and any("quota exceeded" in e for e in first.errors), first
    assert h.store.watch_state(RUN, "cloud_backoff")["a"]["failures"] == 1
    second = h.tick(2)
    assert any(a.kind == "backoff" for a in second.actions)
    assert second.ok, second
    assert {r.cloud for r in h.store.instances(RUN, "web")} == {"a", "b"}
    assert [i.service for i in h.cloud("b").live()] == ["web"]
    h.cloud("a").faults.clear()
    h.cloud("b").crash("web", 1)
    h.tick(1000)  # past the back-off: a is tried again and takes it
    assert {r.cloud for r in h.store.instances(RUN, "web")} == {"a"}
    assert h.store.watch_state(RUN, "cloud_backoff") == {}


def test_a_watcher_killed_inside_a_launch_is_resumed_without_duplicates(harness):
    """What a SIGKILL inside the cloud call leaves: the intent recorded, the cloud's
    instance made, the store never told. The next tick finishes that launch with its
    own client token: the same instance, nothing new."""
    h = harness()
    from cloudinitd.engine.context import open_run

    dead = h.cloud().crash("web", 1)
    ctx = open_run(h.home, h.store, RUN)
    svc = ctx.plan.services["web"]
    from cloudinitd.engine.maintain import remove_dead

    remove_dead(ctx)
    request = _request(ctx, svc, "a", [1])
    h.store.record_launch_intent(RUN, "web", "a", request.client_token, [1], request.tags)
    made = ctx.provider("a").launch(request, lambda index, info: None)[0].instance_id
    launches = len(h.cloud().launches)
    report = h.tick()
    assert any(a.kind == "resume" for a in report.actions), report.actions
    assert h.live("web")[1] == made
    assert h.cloud_live("web") == sorted(h.live("web").values())
    assert dead not in h.cloud_live("web")
    assert len(h.cloud().launches) == launches + 1  # the resumed call, answered from the token
    assert report.ok


def test_a_second_watcher_on_the_same_run_waits_its_turn(harness):
    h = harness()
    from cloudinitd.engine.watch import run_lock

    with run_lock(h.store.run_dir(RUN)) as mine:
        assert mine
        assert h.tick().state == "busy"
    assert h.tick().state == "ok"


def test_a_run_still_booting_is_left_to_boot_and_an_interrupted_one_is_finished(harness):
    h = harness()
    h.cloud().crash("web", 0)
    h.store.update_run(RUN, status="booting")
    report = h.tick()
    assert report.state == "booting" and report.actions == [] and not report.ok
    h.store.update_run(RUN, status="interrupted")
    h.tick(2)
    assert h.store.run(RUN).status == "ready" and set(h.live("web")) == {0, 1}


def test_a_run_wants_watching_when_it_preserves_scales_or_has_a_lifetime(tmp_path):
    from cloudinitd.engine.watch import wants_watch

    folder = tmp_path / "p"
    folder.mkdir()
    for name, text in FILES.items():
        (folder / name).write_text(text)

    def plan(text: str):
        (folder / "plan.yml").write_text(textwrap.dedent(text))
        return load_plan(folder / "plan.yml")

    plain = "clouds: {a: {provider: memory}}\nservices:\n  web: {cloud: a}\n"
    assert not wants_watch(plan(plain))
    assert wants_watch(plan("preserve: true\n" + plain))
    assert wants_watch(plan("lifetime: 1h\n" + plain))
    assert wants_watch(plan(plain.replace("{cloud: a}", "{cloud: a, preserve: true}")))
    assert wants_watch(plan(plain.replace(
        "{cloud: a}", "{cloud: a, autoscale: {min: 1, max: 2, sensor: sensor.sh, target: 5}}")))


def test_an_autoscaled_service_past_its_lifetime_stays_at_zero(harness):
    h = harness(plan=AUTOSCALED.replace("      cooldown: 60s", "      cooldown: 60s\n"
                                        "    lifetime: 10m"))
    _load(h, 90)
    report = h.tick(601)
    assert [(a.kind, a.service) for a in report.actions] == [("lifetime", "web")], report
    assert h.live("web") == {}
    assert h.tick(700).actions == [] and h.live("web") == {}


def test_the_loop_reports_each_check_stops_when_asked_and_ends_with_the_run(harness):
    import threading

    from cloudinitd.engine.watch import watch_loop

    h = harness(plan=PLAN.replace("name: watched", "name: watched\nlifetime: 1h"))
    stop, seen = threading.Event(), []

    def on_report(report) -> None:
        seen.append(report.state)
        if len(seen) == 2:
            stop.set()

    watch_loop(h.home, RUN, interval=0.01, stop=stop, on_report=on_report, store=h.store,
               remote=h.remote)
    assert seen == ["ok", "ok"]
    assert [e.message for e in h.events("watch")] == ["watching every 0.01s", "stopped"]
    h.store.update_run(RUN, expires=h.created)  # the lease is over: the loop ends by itself
    last = watch_loop(h.home, RUN, interval=0.01, stop=threading.Event(), store=h.store,
                      remote=h.remote)
    assert last is not None and last.state == "terminated"
    assert h.cloud().live() == []


class HereForReal(FakeRemote):
    """Steps on this machine (a `local: true` sensor) run for real; SSH is faked."""

    def run_step(self, target, **kw):
        from cloudinitd import remote
        from cloudinitd.remote import LocalTarget

        if isinstance(target, LocalTarget):
            return remote.run_step(target, **kw)
        return super().run_step(target, **kw)


def test_a_local_sensor_runs_once_on_this_machine_and_reads_a_file(harness, tmp_path):
    load = tmp_path / "load"
    load.write_text("some text first\n95\n")
    h = harness(plan=AUTOSCALED.replace("sensor: sensor.sh", "sensor: here.sh\n      local: true"),
                files={"here.sh": f"#!/bin/sh\ncat {load}\n"}, fake=HereForReal)
    report = h.tick(1)
    assert report.readings == {"web": [95.0]}, report
    assert len(h.live("web")) == 3
    load.write_text("1\n")
    report = h.tick(100)
    assert report.readings == {"web": [1.0]} and len(h.live("web")) == 2
    assert not [c for c in h.remote.calls if c.step == "sensor"], "no sensor over SSH"


def test_serve_keeps_runs_that_ask_for_it_and_leaves_the_others(harness, tmp_path):
    """`serve`'s loop ticks every run whose plan preserves, scales or has a lifetime."""
    from cloudinitd.engine.watch import runs_to_watch
    from cloudinitd.service.reconcile import Reconciler
    from cloudinitd.service.state import ServiceState

    h = harness()
    unwatched = tmp_path / "plain"
    unwatched.mkdir()
    (unwatched / "boot.sh").write_text("true\n")
    (unwatched / "plan.yml").write_text(
        "name: plain\nclouds: {a: {provider: memory}}\n"
        "defaults: {cloud: a, image: img}\nservices:\n  one: {boot: boot.sh}\n")
    ctx = start_run(h.home, h.store, load_plan(unwatched / "plan.yml"), {}, "plain")
    ctx.remote = h.remote
    assert boot(ctx).ok
    assert runs_to_watch(h.home, h.store) == [RUN]
    assert runs_to_watch(h.home, h.store, skip={RUN}) == []

    dead = h.cloud().crash("web", 1)
    loop = Reconciler(h.home, h.store, ServiceState(h.home), interval=60, remote=h.remote)
    loop.tick()
    assert loop.stop(grace=60), "the pass did not end"
    after = h.live("web")
    assert dead not in after.values() and len(after) == 2
    assert [e.idx for e in h.events("replace")] == [1]
