"""cloudinitd/plan/durations.py: durations in plans (pure, in-process; in the mutation test selection)."""

from __future__ import annotations

import re

import pytest

from cloudinitd.plan.durations import DURATION_PATTERN, parse_duration


@pytest.mark.parametrize(("value", "seconds"), [
    (30, 30.0),
    (2.5, 2.5),
    ("45", 45.0),
    (" 7.5 ", 7.5),
    ("30s", 30.0),
    ("20m", 1200.0),
    ("2h", 7200.0),
    ("1d", 86400.0),
    ("1h30m", 5400.0),
    ("1h 30m 15s", 5415.0),
    ("1.5m", 90.0),
    (" 2 h ", 7200.0),
    ("1d1h1m1s", 90061.0),
])
def test_durations_in_seconds(value, seconds):
    got = parse_duration(value)
    assert got == seconds
    assert isinstance(got, float)


SHAPE = "(use seconds, or e.g. 30s, 20m, 2h, 1h30m)"


@pytest.mark.parametrize(("value", "message"), [
    (True, "not a duration: True"),
    (False, "not a duration: False"),
    (None, "not a duration: None"),
    ([30], "not a duration: [30]"),
    ("", f"not a duration: '' {SHAPE}"),
    ("soon", f"not a duration: 'soon' {SHAPE}"),
    ("5x", f"not a duration: '5x' {SHAPE}"),
    ("5m later", f"not a duration: '5m later' {SHAPE}"),
    ("m5", f"not a duration: 'm5' {SHAPE}"),
    ("1h,30m", f"not a duration: '1h,30m' {SHAPE}"),
    ("5M", f"not a duration: '5M' {SHAPE}"),
    (0, "a duration must be more than 0 seconds, got 0"),
    (-5, "a duration must be more than 0 seconds, got -5"),
    ("0", "a duration must be more than 0 seconds, got '0'"),
    ("0s", "a duration must be more than 0 seconds, got '0s'"),
    ("0h0m", "a duration must be more than 0 seconds, got '0h0m'"),
    (-0.5, "a duration must be more than 0 seconds, got -0.5"),
])
def test_what_is_not_a_duration_says_why(value, message):
    with pytest.raises(ValueError) as info:
        parse_duration(value)
    assert str(info.value) == message


def test_the_smallest_positive_duration_is_accepted():
    assert parse_duration(0.001) == 0.001
    assert parse_duration("1s") == 1.0


@pytest.mark.parametrize(("text", "matches"), [
    ("30s", True), ("1h30m", True), ("1h 30m", True), (" 45 ", True), ("1.5m", True),
    ("", False), ("soon", False), ("5x", False), ("-5", False), ("1h,30m", False),
])
def test_the_schema_pattern_agrees_with_the_parser(text, matches):
    assert bool(re.match(DURATION_PATTERN, text)) is matches
