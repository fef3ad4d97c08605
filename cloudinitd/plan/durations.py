"""Durations in plans: a number of seconds, or `30s`, `20m`, `2h`, `1d`, `1h30m`."""

from __future__ import annotations

import re

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])")
# Also the JSON Schema pattern for duration strings.
DURATION_PATTERN = r"^\s*(\d+(\.\d+)?\s*[smhd]?\s*)+$"


def parse_duration(value: object) -> float:
    """Seconds in `value`; ValueError with a short reason when it is not a duration."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            parts = _PART.findall(text)
            if not parts or _PART.sub("", text).strip():
                raise ValueError(
                    f"not a duration: {value!r} (use seconds, or e.g. 30s, 20m, 2h, 1h30m)"
                ) from None
            seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    else:
        raise ValueError(f"not a duration: {value!r}")
    if seconds <= 0:
        raise ValueError(f"a duration must be more than 0 seconds, got {value!r}")
    return seconds
