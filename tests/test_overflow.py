"""Phantom's n-preserving overflow policy: data-driven cases for scale_up / scale_down."""

from __future__ import annotations

import pytest

from cloudinitd.overflow import over_max, scale_down, scale_up, shortfall
from cloudinitd.plan.model import CloudPlacement as P

HOTEL_EC2 = [P("hotel", 3), P("ec2", -1)]
THREE = [P("a", 2), P("b", 2), P("c", 2)]

UP_CASES = [
    # placements, current, target, full, expected adds
    ("empty fills first cloud", HOTEL_EC2, {}, 2, set(), {"hotel": 2}),
    ("spills past first max", HOTEL_EC2, {}, 5, set(), {"hotel": 3, "ec2": 2}),
    ("tops up existing", HOTEL_EC2, {"hotel": 1}, 5, set(), {"hotel": 2, "ec2": 2}),
    ("first already at max", HOTEL_EC2, {"hotel": 3}, 4, set(), {"ec2": 1}),
    ("full cloud skipped", HOTEL_EC2, {"hotel": 1}, 4, {"hotel"}, {"ec2": 3}),
    ("all bounded, not enough room", THREE, {}, 9, set(), {"a": 2, "b": 2, "c": 2}),
    ("full middle cloud", THREE, {}, 4, {"b"}, {"a": 2, "c": 2}),
    ("everything full", THREE, {}, 3, {"a", "b", "c"}, {}),
    ("already at target", HOTEL_EC2, {"hotel": 2}, 2, set(), {}),
    ("above target adds nothing", HOTEL_EC2, {"hotel": 3, "ec2": 4}, 2, set(), {}),
    ("unlimited first takes all", [P("x", -1), P("y", 5)], {}, 50, set(), {"x": 50}),
    ("max 0 cloud never used", [P("x", 0), P("y", -1)], {}, 2, set(), {"y": 2}),
    ("unlisted cloud counts toward total", HOTEL_EC2, {"old": 2}, 3, set(), {"hotel": 1}),
    ("cloud above its max gets nothing", HOTEL_EC2, {"hotel": 5}, 7, set(), {"ec2": 2}),
]


@pytest.mark.parametrize(
    ("placements", "current", "target", "full", "expected"),
    [c[1:] for c in UP_CASES],
    ids=[c[0] for c in UP_CASES],
)
def test_scale_up(placements, current, target, full, expected):
    assert scale_up(placements, current, target, full) == expected


DOWN_CASES = [
    ("last cloud first", HOTEL_EC2, {"hotel": 3, "ec2": 2}, 4, {"ec2": 1}),
    ("empties last then previous", HOTEL_EC2, {"hotel": 3, "ec2": 2}, 2, {"ec2": 2, "hotel": 1}),
    ("to zero", HOTEL_EC2, {"hotel": 3, "ec2": 2}, 0, {"ec2": 2, "hotel": 3}),
    ("skips empty last cloud", THREE, {"a": 2, "b": 1}, 1, {"b": 1, "a": 1}),
    ("unlisted cloud emptied first", HOTEL_EC2, {"old": 2, "hotel": 2, "ec2": 1}, 3, {"old": 2}),
    ("nothing to remove", HOTEL_EC2, {"hotel": 2}, 2, {}),
    ("below target removes nothing", HOTEL_EC2, {"hotel": 1}, 4, {}),
    ("negative target treated as zero", HOTEL_EC2, {"hotel": 1}, -3, {"hotel": 1}),
]


@pytest.mark.parametrize(
    ("placements", "current", "target", "expected"),
    [c[1:] for c in DOWN_CASES],
    ids=[c[0] for c in DOWN_CASES],
)
def test_scale_down(placements, current, target, expected):
    assert scale_down(placements, current, target) == expected


def test_overflow_after_capacity_error_preserves_n():
    """The engine's loop: plan, a cloud fails part-way, re-plan the rest elsewhere."""
    placements = [P("a", 5), P("b", -1)]
    current: dict[str, int] = {}
    adds = scale_up(placements, current, 5, set())
    assert adds == {"a": 5}
    # Cloud a launched only 3 before answering InstanceLimitExceeded.
    current = {"a": 3}
    adds = scale_up(placements, current, 5, {"a"})
    assert adds == {"b": 2}
    assert shortfall(current, adds, 5) == 0


def test_shortfall_reports_unplaceable():
    adds = scale_up(THREE, {}, 9, {"c"})
    assert adds == {"a": 2, "b": 2}
    assert shortfall({}, adds, 9) == 5


def test_scale_up_then_down_round_trip():
    placements = [P("a", 3), P("b", -1)]
    current = scale_up(placements, {}, 7, set())
    assert current == {"a": 3, "b": 4}
    removes = scale_down(placements, current, 2)
    left = {c: current[c] - removes.get(c, 0) for c in current}
    assert left == {"a": 2, "b": 0}


def test_over_max_after_plan_lowers_max():
    assert over_max([P("a", 2), P("b", -1)], {"a": 5, "b": 9}) == {"a": 3}
    assert over_max([P("a", 2)], {"a": 2}) == {}


def test_over_max_counts_absent_clouds_as_empty():
    # A bounded cloud with no instances (absent from `current`) is never over its max.
    assert over_max([P("a", 0), P("b", 1), P("c", -1)], {"c": 4}) == {}
    assert over_max([P("a", 0)], {"a": 1, "gone": 3}) == {"a": 1}
