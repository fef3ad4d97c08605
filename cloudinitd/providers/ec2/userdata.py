"""User data that ends an instance at its lease end (with InstanceInitiatedShutdownBehavior
= terminate, a power-off from inside terminates it), kept apart from the user's own.

The guest's clock decides (clouds keep it in sync); the schedule lives until the
instance reboots (a user-data script runs once per instance). `watch` and
`clean` still terminate at the lease end from outside.
"""

from __future__ import annotations

import math
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText


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


def with_shutdown(user_data: str | None, expires: float) -> str:
    """The lease script alone, or both parts as cloud-init multipart (the user's first)."""
    script = shutdown_script(expires)
    if not user_data:
        return script
    message = MIMEMultipart()
    for n, text in enumerate((user_data, script)):
        subtype = "x-shellscript" if text.startswith("#!") else (
            "cloud-config" if text.startswith("#cloud-config") else "plain")
        part = MIMEText(text, subtype, "utf-8")
        part.add_header("Content-Disposition", "attachment", filename=f"part-{n}")
        message.attach(part)
    return message.as_string()
