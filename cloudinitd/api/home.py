"""The state folder a call works in, and its run store opened for that call only.

(The engine answers in the API's own result shape, engine/outcome.py: nothing
is translated here.)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from cloudinitd.paths import cloudinitd_home

if TYPE_CHECKING:
    from cloudinitd.store import Store


def home_path(home: str | Path | None) -> Path:
    """`home` as given, else $CLOUDINITD_HOME (default ~/.cloudinitd)."""
    return Path(home).expanduser() if home is not None else cloudinitd_home()


@contextlib.contextmanager
def opened_store(home: str | Path | None) -> Iterator[Store]:
    """The home's run store for one call, closed after it (a library keeps no handle)."""
    from cloudinitd.store import Store

    store = Store(home_path(home))
    try:
        yield store
    finally:
        store.close()
