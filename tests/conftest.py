"""Shared fixtures, one module per kind of real part (see docs/INTERNALS.md)."""

pytest_plugins = [
    "tests.support.cli",
    "tests.support.sshd",
    "tests.support.lxc",
    "tests.support.testcloud.fixtures",
    "tests.support.qemu",
]
