"""The one rule for run names, checked before anything is created, launched or written.

A run name becomes a folder under $CLOUDINITD_HOME/runs, a tag on cloud
instances and part of container names, so it is kept to a safe charset:
no `/`, no `..`, no spaces, nothing a shell or a path would read specially.
"""

from __future__ import annotations

import re

from cloudinitd.errors import UsageError, one_line

MAX_RUN_NAME = 63
RUN_NAME = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{MAX_RUN_NAME - 1}}}")
RUN_NAME_RULE = (
    f"a letter or digit, then letters, digits, '.', '_' or '-', at most {MAX_RUN_NAME} characters"
)


def check_run_name(name: str) -> str:
    """`name` itself when it is a valid run name; else UsageError (exit 2)."""
    if not isinstance(name, str) or not RUN_NAME.fullmatch(name):
        shown = name if len(name) <= 80 else f"{name[:80]}..."
        raise UsageError(one_line(f"bad run name {shown!r}: use {RUN_NAME_RULE}"))
    return name
