"""What the run store returns: typed records, not SQLite rows.

`Run`, `ServiceRecord`, `Instance`, `Launch` and `Event` are frozen
dataclasses named by their fields. Columns a newer store has and these
classes do not name yet are kept in `other` (a store upgraded by another
version never loses a value here).

Transitional: `record["field"]` and `record.get("field")` still answer, so
modules move to attribute access one at a time (issue 10); new code uses
attributes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from functools import cache
from typing import Any, TypeVar

R = TypeVar("R", bound="Record")


@cache
def _names(cls: type) -> tuple[str, ...]:
    """The record's field names (not `other`), in order."""
    return tuple(f.name for f in fields(cls) if f.name != "other")


class Record:
    """Mapping-style reads over a dataclass's fields (and `other`)."""

    other: dict[str, Any]

    @classmethod
    def from_row(cls: type[R], row: dict[str, Any]) -> R:
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        known = {k: v for k, v in row.items() if k in names}
        return cls(**known, other={k: v for k, v in row.items() if k not in names})

    def keys(self) -> list[str]:
        return [*_names(type(self)), *self.other]

    def __getitem__(self, key: str) -> Any:
        if key in _names(type(self)):
            return getattr(self, key)
        try:
            return self.other[key]
        except KeyError:
            raise KeyError(key) from None

    def __contains__(self, key: object) -> bool:
        return key in _names(type(self)) or key in self.other

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

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
