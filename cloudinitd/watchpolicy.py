"""What `watch` decides, as pure functions: which instances to replace, how many a
sensor asks for, which clouds to leave alone for a while, when a lease is over.

Nothing here talks to a cloud, a host or the store: `engine/watch.py` gathers
the facts (health, readings, the clock, the launch records), asks here, and acts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from cloudinitd.plan.model import AutoscaleSpec

# A cloud whose launches keep failing is skipped (treated as full, so the overflow
# policy places on the next cloud) for BASE, 2 x BASE, 4 x BASE ... at most CAP seconds.
BACKOFF_BASE = 30.0
BACKOFF_CAP = 900.0
# An instance in one of these states is dead: its service gets a new one in its place.
DEAD_STATES = frozenset({"error", "terminated"})


@dataclass(frozen=True)
class Seen:
    """One instance as the health check saw it."""

    service: str
    index: int
    state: str
    healthy: bool
    detail: str = ""


@dataclass(frozen=True)
class Replacement:
    service: str
    index: int
    reason: str


def to_replace(seen: Iterable[Seen], preserved: set[str]) -> list[Replacement]:
    """Slots of preserved services whose instance is dead, gone or fails its health check.

    Pending instances are left to come up; services that do not preserve keep
    what they have (a `repair` by hand replaces it).
    """
    out = []
    for item in seen:
        if item.service not in preserved or item.healthy or item.state == "pending":
            continue
        if item.state in DEAD_STATES:
            reason = f"instance is {item.state}"
        elif item.state == "missing":
            reason = "no live instance (gone)"
        else:
            reason = item.detail or "unhealthy"
        out.append(Replacement(item.service, item.index, reason))
    return sorted(out, key=lambda r: (r.service, r.index))


def parse_reading(text: object) -> float:
    """A sensor's value: a finite number (ValueError otherwise, naming what came)."""
    raw = str(text).strip()
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"sensor printed {raw[:40]!r}, not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"sensor printed {raw[:40]!r}, not a finite number")
    return value


@dataclass(frozen=True)
class ScaleDecision:
    count: int  # the service's new count (== current when nothing changes)
    reason: str

    def changes(self, current: int) -> bool:
        return self.count != current


def decide_scale(spec: AutoscaleSpec, current: int, readings: list[float],
                 last_scaled: float | None, now: float) -> ScaleDecision:
    """The count a service's sensor readings ask for, within `min`..`max`.

    Outside the bounds (a plan edited, a `scale` by hand) it comes back inside
    at once, cooldown or not. Without readings nothing moves. Thresholds compare
    the mean reading: above `above` adds `step`, below `below` removes `step`.
    A `target` asks for the count whose mean would sit at the target
    (current x mean / target, rounded up), as AWS's target tracking does.
    """
    if current < spec.min:
        return ScaleDecision(spec.min, f"{current} is below min {spec.min}")
    if current > spec.max:
        return ScaleDecision(spec.max, f"{current} is above max {spec.max}")
    if not readings:
        return ScaleDecision(current, "no sensor readings")
    if last_scaled is not None and now - last_scaled < spec.cooldown:
        return ScaleDecision(current, f"cooling down ({spec.cooldown - (now - last_scaled):.0f}s"
                                      " left)")
    mean = sum(readings) / len(readings)
    shown = f"mean {mean:g} of {len(readings)} reading(s)"
    if spec.target is not None:
        wanted = math.ceil(max(current, 1) * mean / spec.target - 1e-9)
        reason = f"{shown}, target {spec.target:g}"
    elif spec.above is not None and mean > spec.above:
        wanted, reason = current + spec.step, f"{shown} above {spec.above:g}"
    elif spec.below is not None and mean < spec.below:
        wanted, reason = current - spec.step, f"{shown} below {spec.below:g}"
    else:
        return ScaleDecision(current, f"{shown} within thresholds")
    return ScaleDecision(min(spec.max, max(spec.min, wanted)), reason)


@dataclass(frozen=True)
class CloudHealth:
    failures: int = 0  # launches failed in a row
    last_failure: float = 0.0


def backoff_delay(failures: int) -> float:
    """Seconds a cloud is skipped after `failures` failed launches in a row."""
    if failures <= 0:
        return 0.0
    return min(BACKOFF_CAP, BACKOFF_BASE * 2 ** min(failures - 1, 20))


def avoided(health: Mapping[str, CloudHealth], now: float) -> set[str]:
    """Clouds still inside their back-off window."""
    return {cloud for cloud, h in health.items()
            if h.failures and now < h.last_failure + backoff_delay(h.failures)}


def after_launches(health: Mapping[str, CloudHealth], outcomes: Iterable[tuple[str, str]],
                   now: float) -> dict[str, CloudHealth]:
    """Cloud health after this tick's launches, given as (cloud, status) in order.

    `done` clears a cloud's failures; `failed` and `capacity` add one each.
    """
    out = dict(health)
    for cloud, status in outcomes:
        if status == "done":
            out[cloud] = CloudHealth()
        elif status in ("failed", "capacity"):
            out[cloud] = CloudHealth(out.get(cloud, CloudHealth()).failures + 1, now)
    return {cloud: h for cloud, h in out.items() if h.failures}


def expiry(created: float, lifetime: float | None) -> float | None:
    """When a lease counted from the run's creation ends (None: never)."""
    return None if lifetime is None else created + lifetime
