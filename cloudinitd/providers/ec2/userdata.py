"""User data that ends an instance at its lease end (with InstanceInitiatedShutdownBehavior
= terminate, a power-off from inside terminates it), kept apart from the user's own.

The guest's clock decides (clouds keep it in sync); the schedule lives until the
instance reboots (a user-data script runs once per instance). `watch` and
`clean` still terminate at the lease end from outside.

The user's own bytes go to EC2 exactly as given when no lease applies (boto3
base64-encodes `UserData` itself: nothing here encodes it). With a lease they
become part one of a cloud-init multipart (a gzip'd one inflated first, bounded,
so that a gzip'd multipart such as Terraform's keeps its parts), and the whole
is gzip'd when it passes 16 KB (cloud-init inflates a gzip'd whole).
"""

from __future__ import annotations

import math

from cloudinitd.errors import ProviderError
from cloudinitd.plan import userdata


def shutdown_script(expires: float) -> str:
    end = math.ceil(expires)
    return (
        "#!/bin/sh\n"
        "# cloudinitd lease: power off (the cloud then terminates) at the run's lifetime end\n"
        f"left=$(( {end} - $(date +%s) ))\n"
        'if [ "$left" -le 0 ]; then shutdown -h now; exit 0; fi\n'
        "minutes=$(( (left + 59) / 60 ))\n"
        'shutdown -h "+$minutes" >/dev/null 2>&1 || '
        '{ nohup sh -c "sleep $left; poweroff" >/dev/null 2>&1 & }\n'
    )


def with_shutdown(user_data: bytes | None, expires: float) -> bytes:
    """The lease script alone, or both parts as cloud-init multipart (the user's first)."""
    script = shutdown_script(expires).encode()
    if not user_data:
        return script
    try:
        return userdata.within_limit(
            userdata.merged(user_data, [("cloudinitd-lease.sh", script, None)]))
    except userdata.UserDataError as exc:
        raise ProviderError(f"user_data {exc}; the lease's power-off part cannot be added"
                            " (give the service no lifetime, or smaller user data)") from None
