"""Sizes written by people (`8G`, `512M`, `1.5T`): parsed to bytes and shown back.

Units are binary (K = 1024) whatever their spelling: `4G`, `4GB` and `4GiB`
are all 4 × 2^30 bytes, as for disk sizes in qemu-img, truncate and LXC.
A unit is required: a bare number could mean bytes or gigabytes.
"""

from __future__ import annotations

import re

_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE = re.compile(r"^\s*(\d{1,7}(?:\.\d{1,3})?)\s*([KMGT])(?:i?B)?\s*$", re.IGNORECASE)


def parse_size(text: object) -> int:
    """`4G` -> 4294967296; ValueError for anything else (a number without a unit too)."""
    match = _SIZE.match(text) if isinstance(text, str) else None
    if not match:
        raise ValueError("expected a number and a unit (K, M, G or T), like 8G or 512M")
    number, unit = match.groups()
    return int(float(number) * _UNITS[unit.upper()])


def format_size(size: int) -> str:
    """The largest unit that shows `size` exactly (8589934592 -> `8G`), else bytes."""
    for unit in "TGMK":
        if size >= _UNITS[unit] and size % _UNITS[unit] == 0:
            return f"{size // _UNITS[unit]}{unit}"
    return str(size)


# An instance disk's cap (the `local` provider's `disk:` option, providers/local/disk.py).
DISK_DEFAULT = 8 << 30  # 8 GiB, sparse: only what an instance writes is used
DISK_MIN = 256 << 20  # room for a booted Debian's logs and apt's lists
DISK_MAX = 1 << 40  # 1 TiB
DISK_LIMITS = f"from {format_size(DISK_MIN)} to {format_size(DISK_MAX)}"


def disk_size(value: object) -> int:
    """The cap a `disk:` option asks for (DISK_DEFAULT when absent); ValueError when out of bounds."""
    if value is None:
        return DISK_DEFAULT
    size = parse_size(value)
    if not DISK_MIN <= size <= DISK_MAX:
        raise ValueError(f"a disk size is {DISK_LIMITS}")
    return size


def valid_disk_size(value: object) -> bool:
    """For the cloud-entry schema (format `disk-size`): given and within bounds."""
    try:
        return value is not None and bool(disk_size(value))
    except ValueError:
        return False
