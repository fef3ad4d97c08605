"""cloudinitd.host.waiting.wait_until on a fake clock (no real sleeping, no timings)."""

from __future__ import annotations

import pytest

from cloudinitd.host.waiting import wait_until


class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_returns_the_first_truthy_answer() -> None:
    clock = Clock()
    answers = iter([None, 0, "", "ready", "later"])
    assert wait_until(lambda: next(answers), 10, 1, clock=clock, sleep=clock.sleep) == "ready"
    assert clock.sleeps == [1, 1, 1]


def test_at_the_deadline_it_asks_once_more_and_returns_the_last_answer() -> None:
    clock = Clock()
    calls: list[float] = []

    def check() -> list[str]:
        calls.append(clock.now)
        return []

    assert wait_until(check, 2.5, 1, clock=clock, sleep=clock.sleep) == []
    # Never sleeps past the deadline, and looks once at it.
    assert clock.sleeps == [1, 1, 0.5]
    assert calls == [100.0, 101.0, 102.0, 102.5]


def test_a_condition_met_during_the_last_sleep_is_not_a_timeout() -> None:
    clock = Clock()
    assert wait_until(lambda: clock.now >= 103, 3, 2, clock=clock, sleep=clock.sleep)


def test_zero_timeout_asks_once() -> None:
    clock = Clock()
    calls = []
    assert wait_until(lambda: calls.append(1), 0, 1, clock=clock, sleep=clock.sleep) is None
    assert calls == [1] and clock.sleeps == []


def test_backoff_grows_the_interval_up_to_its_cap() -> None:
    clock = Clock()
    wait_until(lambda: False, 100, 0.5, backoff=2, max_interval=3, clock=clock,
               sleep=clock.sleep)
    assert clock.sleeps[:5] == [0.5, 1, 2, 3, 3]
    assert sum(clock.sleeps) == pytest.approx(100)


def test_an_error_in_the_check_ends_the_wait() -> None:
    clock = Clock()

    def check() -> bool:
        if clock.now >= 102:
            raise RuntimeError("instance vanished")
        return False

    with pytest.raises(RuntimeError, match="vanished"):
        wait_until(check, 10, 1, clock=clock, sleep=clock.sleep)
    assert clock.now == 102
