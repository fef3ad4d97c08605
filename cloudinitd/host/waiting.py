"""Waiting until something holds, with a deadline: the one polling loop.

Callers used to write `deadline = monotonic() + t; while monotonic() < deadline: ...;
sleep(x)` each their own way, some forgetting the last look at the deadline. Here the
condition is always asked once more at the deadline (a sleep never overshoots it), so
a condition that became true during the last sleep is not reported as a time-out.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    check: Callable[[], T],
    timeout: float,
    interval: float = 0.1,
    *,
    backoff: float = 1.0,
    max_interval: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call `check` until it answers something truthy or `timeout` seconds have passed.

    Returns that answer, or the last (falsy) one at the deadline: `check` runs at least
    once. Between calls it sleeps `interval`, multiplied by `backoff` after each call
    (capped at `max_interval`) for clouds that should not be asked too often. `clock`
    is the time the deadline is measured on (a lease end is wall-clock time).
    """
    deadline = clock() + timeout
    while True:
        answer = check()
        if answer:
            return answer
        left = deadline - clock()
        if left <= 0:
            return answer
        sleep(min(interval, left))
        interval *= backoff
        if max_interval is not None:
            interval = min(interval, max_interval)
