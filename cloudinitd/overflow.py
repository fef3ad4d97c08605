"""Phantom's n-preserving multi-cloud overflow policy, as pure functions.

A service has a desired instance count N and an ordered list of clouds, each
with a maximum (-1 = no limit). Scaling up fills the clouds in list order,
each up to its maximum, spilling to the next; a cloud that failed to launch
(quota, capacity) is "full" and gets nothing more for now. Scaling down
removes from the last cloud of the list first, so the preferred (first)
clouds keep their instances longest.

Nothing here talks to a cloud: the engine asks how many to add or remove per
cloud, acts, and asks again with an updated `current` / `full` after a
CapacityError.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cloudinitd.plan.model import CloudPlacement

UNLIMITED = -1


def _room(placement: CloudPlacement, have: int) -> int | None:
    """Free slots on a cloud given what it already has; None when unlimited."""
    if placement.max is None or placement.max < 0:
        return None
    return max(placement.max - have, 0)


def scale_up(
    placements: Sequence[CloudPlacement],
    current: Mapping[str, int],
    target: int,
    full: set[str] | frozenset[str] = frozenset(),
) -> dict[str, int]:
    """How many instances to ADD per cloud to bring the total up to `target`.

    `current` counts live instances per cloud (clouds absent count 0; clouds
    not in `placements` still count toward the total). Clouds in `full` are
    skipped. The result may add fewer than needed when every cloud is full
    or at its maximum; `shortfall()` tells the caller by how much.
    Only clouds that get at least one instance appear in the result.
    """
    need = target - sum(current.values())
    adds: dict[str, int] = {}
    if need <= 0:
        return adds
    for placement in placements:
        if need <= 0:
            break
        if placement.cloud in full:
            continue
        have = current.get(placement.cloud, 0) + adds.get(placement.cloud, 0)
        room = _room(placement, have)
        take = need if room is None else min(room, need)
        if take > 0:
            adds[placement.cloud] = adds.get(placement.cloud, 0) + take
            need -= take
    return adds


def scale_down(
    placements: Sequence[CloudPlacement],
    current: Mapping[str, int],
    target: int,
) -> dict[str, int]:
    """How many instances to REMOVE per cloud to bring the total down to `target`.

    Clouds that have instances but are no longer in `placements` (the plan
    changed) are emptied first; then the list is walked from its last cloud
    to its first. Only clouds that lose at least one instance appear.
    """
    excess = sum(current.values()) - max(target, 0)
    removes: dict[str, int] = {}
    if excess <= 0:
        return removes
    listed = [p.cloud for p in placements]
    order = [c for c in current if c not in listed] + list(reversed(listed))
    for cloud in order:
        if excess <= 0:
            break
        have = current.get(cloud, 0) - removes.get(cloud, 0)
        take = min(have, excess)
        if take > 0:
            removes[cloud] = removes.get(cloud, 0) + take
            excess -= take
    return removes


def shortfall(current: Mapping[str, int], adds: Mapping[str, int], target: int) -> int:
    """How many instances `adds` leaves missing from `target` (0 when it reaches it)."""
    return max(target - sum(current.values()) - sum(adds.values()), 0)


def over_max(placements: Sequence[CloudPlacement], current: Mapping[str, int]) -> dict[str, int]:
    """Instances beyond a cloud's maximum (after the plan lowered a `max`), per cloud."""
    extra: dict[str, int] = {}
    for placement in placements:
        room = _room(placement, 0)
        have = current.get(placement.cloud, 0)
        if room is not None and have > room:
            extra[placement.cloud] = have - room
    return extra
