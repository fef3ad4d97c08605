"""What the run store returns: typed records, not SQLite rows.

`Run`, `ServiceRecord`, `Instance`, `Launch` and `Event` are frozen
dataclasses named by their fields. Columns a newer store has and these
classes do not name yet are kept in `other` (a store upgraded by another
version never loses a value here).

Fields are read as attributes only: `record["field"]` is a TypeError (the
mapping-style stopgap of the move away from rows is gone, so it cannot come
back unnoticed; tests/test_records.py holds it).
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field, fields
from typing import Any, TypeVar

R = TypeVar("R", bound="Record")


@functools.cache
def _field_names(cls: type) -> frozenset[str]:
    # Once per class: a converge builds the run's world from every instance row at
    # each hand-out, and dataclasses.fields() per row was a third of that.
    return frozenset(f.name for f in fields(cls))


class Record:
    """Built from a store row; plain data for --json. Not a mapping."""

    other: dict[str, Any]

    @classmethod
    def from_row(cls: type[R], row: dict[str, Any]) -> R:
        names = _field_names(cls)
        known = {k: v for k, v in row.items() if k in names}
        return cls(**known, other={k: v for k, v in row.items() if k not in names})

    def as_dict(self) -> dict[str, Any]:
        """Plain data (for --json): the fields, then the other columns."""
        out = asdict(self)  # type: ignore[call-overload]
        return {**{k: v for k, v in out.items() if k != "other"}, **self.other}


@dataclass(frozen=True)
class Run(Record):
    name: str
    plan_name: str
    plan_path: str
    status: str
    created: float
    updated: float
    expires: float | None = None
    vars: dict[str, Any] = field(default_factory=dict)  # the --var overrides, as given
    counts: dict[str, int] = field(default_factory=dict)  # `scale` overrides per service
    clouds: dict[str, Any] = field(default_factory=dict)  # cloud references, never secrets
    other: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class ServiceRecord(Record):
    run: str
    name: str
    status: str
    step: str | None = None
    error: str | None = None
    log_path: str | None = None
    updated: float = 0.0
    other: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Instance(Record):
    """One service's use of one machine (see storeschema.py: several services may share one)."""

    id: int
    run: str
    service: str
    idx: int
    cloud: str
    provider: str
    instance_id: str
    client_token: str | None
    state: str
    address: str | None
    private_address: str | None
    hostname: str | None
    boot_hash: str | None
    configured: int
    launched: float
    terminated: float | None
    extra: dict[str, Any] = field(default_factory=dict)  # provider facts shown by status
    other: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Launch(Record):
    """A launch intent, recorded before the cloud call (its client token and tags)."""

    id: int
    run: str
    service: str
    cloud: str
    client_token: str
    status: str
    created: float
    indexes: list[int] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    other: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Event(Record):
    ts: float
    kind: str
    message: str
    service: str | None = None
    idx: int | None = None
    other: dict[str, Any] = field(default_factory=dict, repr=False)
