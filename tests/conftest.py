"""Shared fixtures, one module per kind of real part (see docs/INTERNALS.md)."""

import pytest

pytest_plugins = [
    "tests.support.cli",
    "tests.support.sshd",
    "tests.support.lxc",
    "tests.support.testcloud.fixtures",
    "tests.support.qemu",
]


@pytest.fixture(autouse=True)
def _fresh_template_parses():
    """Each test parses its templates itself: refscan keeps parses for the life of a
    process, so without this a test would pass on another test's parse (and mutmut's
    forked children, started after a full run, would never reach the parsing code)."""
    from cloudinitd import refscan

    refscan._parse_cached.cache_clear()
