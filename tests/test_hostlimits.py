"""Machine-wide limits the local provider raises (pure logic on the real /proc file).

No container is needed: the function is called directly. The machine's own
value is left as it was found (raising by one and restoring it is harmless
to anything else running here).
"""

from __future__ import annotations

import os

import pytest

from cloudinitd.providers.local import hostlimits


@pytest.fixture
def inotify_limit():
    if os.geteuid() != 0:
        pytest.fail("raising fs.inotify.max_user_instances needs root", pytrace=False)
    before = hostlimits.inotify_limit()
    assert before is not None, f"{hostlimits.INOTIFY_INSTANCES} is unreadable"
    try:
        yield before
    finally:
        hostlimits.INOTIFY_INSTANCES.write_text(f"{before}\n")


def test_a_limit_below_the_floor_is_raised_to_it(inotify_limit):
    # Whatever this machine has, a floor one above it must be reached.
    hostlimits.ensure_inotify_instances(floor=inotify_limit + 1)
    assert hostlimits.inotify_limit() == inotify_limit + 1


def test_a_higher_limit_is_never_lowered(inotify_limit):
    hostlimits.ensure_inotify_instances(floor=inotify_limit - 1)
    assert hostlimits.inotify_limit() == inotify_limit
    hostlimits.ensure_inotify_instances(floor=inotify_limit)
    assert hostlimits.inotify_limit() == inotify_limit


def test_exhausted_inotify_budget_is_named_in_the_hint():
    console = ["Failed to allocate manager object: Too many open files", "Exiting PID 1..."]
    hint = hostlimits.exhaustion_hint(console)
    assert "fs.inotify.max_user_instances" in hint and "sysctl -w" in hint
    assert f"max_user_instances={hostlimits.INOTIFY_FLOOR})" in hint
    assert hostlimits.exhaustion_hint(["Welcome to Debian GNU/Linux 12 (bookworm)!"]) == ""
