"""The tags every ec2 instance carries, and reading a replica index back from them.

TagSpecifications give every instance of one RunInstances the same tags, so
the per-instance `cloudinitd:index` needs a CreateTags call each. Until that
call lands (or if the process dies first) the index is still recoverable:
`cloudinitd:indexes` lists the request's indexes in launch order and the
instance's AmiLaunchIndex picks its own.
"""

from __future__ import annotations

from typing import Any

from cloudinitd.providers.base import LaunchRequest

TAG_PREFIX = "cloudinitd:"
MAX_TAG_VALUE = 256  # EC2's limit on a tag value


def encode_indexes(indexes: list[int]) -> str | None:
    """`[0, 1, 2, 5, 7, 8]` -> `"0-2,5,7-8"`; None when it would not fit in a tag."""
    parts: list[str] = []
    start = prev = None
    for i in [*indexes, None]:
        if start is not None and (i is None or i != prev + 1):
            parts.append(str(start) if start == prev else f"{start}-{prev}")
            start = None
        if i is not None and start is None:
            start = i
        prev = i
    text = ",".join(parts)
    return text if len(text) <= MAX_TAG_VALUE else None


def decode_indexes(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def launch_tags(request: LaunchRequest) -> dict[str, str]:
    """Tags set on every instance of the request by RunInstances itself."""
    tags = {TAG_PREFIX + k: str(v) for k, v in request.tags.items()}
    tags.setdefault(TAG_PREFIX + "run", request.run)
    tags.setdefault(TAG_PREFIX + "service", request.service)
    tags.setdefault(TAG_PREFIX + "plan", request.plan)
    tags["Name"] = f"{request.run}-{request.service}"
    indexes = encode_indexes(request.indexes)
    if indexes is not None:
        tags[TAG_PREFIX + "indexes"] = indexes
    return tags


def index_tags(run: str, hostname: str, index: int) -> list[dict[str, str]]:
    return [
        {"Key": TAG_PREFIX + "index", "Value": str(index)},
        {"Key": "Name", "Value": f"{run}-{hostname}"},
    ]


def index_from_tags(inst: dict[str, Any], tags: dict[str, str]) -> int | None:
    own = tags.get(TAG_PREFIX + "index")
    if own is not None and own.isdigit():
        return int(own)
    listed = tags.get(TAG_PREFIX + "indexes")
    launch_index = inst.get("AmiLaunchIndex")
    if listed and isinstance(launch_index, int):
        try:
            indexes = decode_indexes(listed)
        except ValueError:
            return None
        if 0 <= launch_index < len(indexes):
            return indexes[launch_index]
    return None
