"""The pure decisions of `watch` (watchpolicy.py), and how a plan declares them."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from cloudinitd.plan.loader import load_plan
from cloudinitd.plan.model import AutoscaleSpec, ScriptSpec
from cloudinitd.watchpolicy import (
    BACKOFF_BASE,
    BACKOFF_CAP,
    CloudHealth,
    Seen,
    after_launches,
    avoided,
    backoff_delay,
    decide_scale,
    expiry,
    parse_reading,
    to_replace,
)

SENSOR = ScriptSpec(ref="s.sh", path=Path("s.sh"), source="true")


def spec(**kw) -> AutoscaleSpec:
    base = dict(min=1, max=5, sensor=SENSOR, above=80.0, below=20.0, step=1, cooldown=60.0)
    return AutoscaleSpec(**{**base, **kw})


def test_only_preserved_services_lose_their_dead_or_unhealthy_instances():
    seen = [Seen("web", 0, "running", True), Seen("web", 1, "error", False),
            Seen("web", 2, "running", False, "ready script failed: exit 1"),
            Seen("web", 3, "pending", False), Seen("web", 4, "missing", False),
            Seen("batch", 0, "error", False)]
    got = [(r.service, r.index, r.reason) for r in to_replace(seen, {"web"})]
    assert got == [("web", 1, "instance is error"), ("web", 2, "ready script failed: exit 1"),
                   ("web", 4, "no live instance (gone)")]
    assert to_replace(seen, set()) == []


@pytest.mark.parametrize(("text", "value"), [("42", 42.0), (" 3.5\n", 3.5), ("-1", -1.0),
                                             ("1e3", 1000.0)])
def test_a_reading_is_a_finite_number(text, value):
    assert parse_reading(text) == value


@pytest.mark.parametrize("text", ["", "lots", "nan", "inf", "-inf", "1 2"])
def test_anything_else_is_refused_with_what_came(text):
    with pytest.raises(ValueError, match="not a"):
        parse_reading(text)


def test_thresholds_add_or_remove_a_step_within_bounds():
    s = spec(step=2)
    assert decide_scale(s, 2, [90, 100], None, 0).count == 4
    assert decide_scale(s, 4, [90], None, 0).count == 5  # max 5
    assert decide_scale(s, 3, [10, 10], None, 0).count == 1
    assert decide_scale(s, 2, [10], None, 0).count == 1  # min 1
    stay = decide_scale(s, 3, [50], None, 0)
    assert stay.count == 3 and "within thresholds" in stay.reason
    assert decide_scale(s, 3, [80], None, 0).count == 3  # not above 80
    assert decide_scale(s, 3, [20], None, 0).count == 3  # not below 20


def test_only_one_threshold_moves_one_way_only():
    up = spec(below=None)
    assert decide_scale(up, 3, [0], None, 0).count == 3
    assert decide_scale(up, 3, [81], None, 0).count == 4


def test_the_mean_of_the_readings_decides():
    assert decide_scale(spec(), 2, [100, 0], None, 0).count == 2  # mean 50
    assert decide_scale(spec(), 2, [100, 70], None, 0).count == 3  # mean 85


def test_cooldown_holds_the_count_until_it_has_passed():
    s = spec(cooldown=60)
    held = decide_scale(s, 2, [90], last_scaled=100, now=130)
    assert held.count == 2 and "cooling down (30s left)" in held.reason
    assert decide_scale(s, 2, [90], last_scaled=100, now=160).count == 3


def test_outside_the_bounds_it_comes_back_at_once_cooldown_or_not():
    assert decide_scale(spec(min=2), 1, [], 100, 101).count == 2
    assert decide_scale(spec(max=3), 7, [], 100, 101).count == 3


def test_no_readings_move_nothing():
    decision = decide_scale(spec(), 3, [], None, 0)
    assert not decision.changes(3) and decision.reason == "no sensor readings"


@pytest.mark.parametrize(("current", "mean", "wanted"),
                         [(2, 75, 3), (2, 50, 2), (4, 10, 1), (3, 51, 4), (1, 500, 5),
                          (0, 0, 0), (0, 60, 2)])
def test_a_target_asks_for_the_count_that_brings_the_mean_to_it(current, mean, wanted):
    s = spec(above=None, below=None, target=50.0, min=min(1, current))
    assert decide_scale(s, current, [mean], None, 0).count == wanted


def test_backoff_doubles_up_to_its_cap():
    assert backoff_delay(0) == 0
    assert [backoff_delay(n) for n in (1, 2, 3)] == [BACKOFF_BASE, 2 * BACKOFF_BASE,
                                                    4 * BACKOFF_BASE]
    assert backoff_delay(50) == BACKOFF_CAP


def test_a_cloud_is_avoided_inside_its_window_only():
    health = {"a": CloudHealth(2, 1000.0), "b": CloudHealth(0, 0.0)}
    assert avoided(health, 1000 + 2 * BACKOFF_BASE - 1) == {"a"}
    assert avoided(health, 1000 + 2 * BACKOFF_BASE) == set()


def test_launch_outcomes_count_failures_in_a_row_and_success_clears_them():
    health = after_launches({}, [("a", "failed"), ("b", "done")], now=5)
    assert health == {"a": CloudHealth(1, 5)}
    health = after_launches(health, [("a", "capacity")], now=9)
    assert health == {"a": CloudHealth(2, 9)}
    assert after_launches(health, [("a", "requested")], now=10) == health
    assert after_launches(health, [("a", "done")], now=11) == {}


def test_expiry_counts_from_the_run_creation():
    assert expiry(1000.0, None) is None
    assert expiry(1000.0, 60) == 1060.0


def test_a_plan_declares_preserve_and_autoscale(tmp_path):
    (tmp_path / "load.sh").write_text("echo 1\n")
    (tmp_path / "plan.yml").write_text(textwrap.dedent("""
        preserve: true
        services:
          web:
            count: 2
            autoscale:
              min: 1
              max: 4
              sensor: {script: load.sh, args: ["{{ vars.x | default('1') }}"]}
              local: true
              thresholds: {above: 80, below: 10, step: 2}
              cooldown: 2m
          db:
            preserve: false
          tail:
            host: db
        """))
    plan = load_plan(tmp_path / "plan.yml")
    web, db, tail = (plan.services[n] for n in ("web", "db", "tail"))
    assert plan.preserve and web.preserve and not db.preserve and not tail.preserve
    a = web.autoscale
    assert (a.min, a.max, a.above, a.below, a.step, a.target, a.cooldown, a.local) == \
        (1, 4, 80.0, 10.0, 2, None, 120.0, True)
    assert a.sensor.path.name == "load.sh" and a.sensor.args == ["{{ vars.x | default('1') }}"]
    assert db.autoscale is None


# --- what the mutation run showed untested: the reasons `watch` prints and records ---


def test_an_unhealthy_instance_without_detail_is_replaced_as_unhealthy():
    [r] = to_replace([Seen("web", 0, "running", False)], {"web"})
    assert (r.service, r.index, r.reason) == ("web", 0, "unhealthy")


@pytest.mark.parametrize("text, tail", [("x" * 50, "not a number"),
                                        ("9" * 400, "not a finite number")])
def test_a_refused_reading_names_its_first_40_characters(text, tail):
    with pytest.raises(ValueError) as info:
        parse_reading(text)
    assert str(info.value) == f"sensor printed {text[:40]!r}, {tail}"


@pytest.mark.parametrize(("kw", "current", "readings", "count", "reason"), [
    ({"min": 2}, 1, [], 2, "1 is below min 2"),
    ({"max": 3}, 7, [], 3, "7 is above max 3"),
    ({"max": 3}, 3, [], 3, "no sensor readings"),  # at max is inside the bounds
    ({"max": 3}, 3, [90, 95], 3, "mean 92.5 of 2 reading(s) above 80"),
    ({}, 3, [10], 2, "mean 10 of 1 reading(s) below 20"),
    ({"above": None, "below": None, "target": 50.0}, 2, [75], 3,
     "mean 75 of 1 reading(s), target 50"),
])
def test_each_decision_says_why(kw, current, readings, count, reason):
    decision = decide_scale(spec(**kw), current, readings, None, 0)
    assert (decision.count, decision.reason) == (count, reason)
