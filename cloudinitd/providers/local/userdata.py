"""A local instance's user data: its `#!` script, run once at first boot as root.

The containers' image has no cloud-init, so this does what cloud-init's
`scripts_user` would: the script runs once per instance (a marker written
before it starts, as cloud-init's semaphore, so a reboot never runs it again),
after the network and sshd are up (so it runs beside the plan's boot steps, as
cloud-final does on a cloud), its output appended to a log in the container.
The plan loader and `serve` refuse any other user data for this kind (the kind
declares `user_data="script"`); gzip is inflated here, bounded (plan/userdata.py).

The files go into the instance's own disk before it first starts; a drop-in of
multi-user.target pulls the unit in, so the shared base image is unchanged.
"""

from __future__ import annotations

from cloudinitd.errors import ProviderError
from cloudinitd.plan import userdata

SCRIPT = "/var/lib/cloudinitd/user-data"
DONE = "/var/lib/cloudinitd/user-data.done"
LOG = "/var/log/cloudinitd-user-data.log"
UNIT_NAME = "cloudinitd-user-data.service"

# `$$` is a literal `$` for systemd. The exit status goes to the log, as cloud-init's.
UNIT = f"""[Unit]
Description=cloudinitd: the instance's user data script, once (as cloud-init's scripts-user)
After=network.target ssh.service cloudinitd-firstboot.service
ConditionPathExists=!{DONE}

[Service]
Type=oneshot
RemainAfterExit=yes
TimeoutStartSec=0
StandardOutput=append:{LOG}
StandardError=inherit
ExecStart=/bin/sh -c 'touch {DONE}; {SCRIPT}; s=$$?; echo "cloudinitd: user data exited $$s"; exit $$s'
"""

WANTS = f"[Unit]\nWants={UNIT_NAME}\n"


def guest_files(data: bytes) -> dict[str, tuple[bytes, int]]:
    """The files (path in the guest: content, mode) that run `data` at first boot."""
    try:
        script = userdata.content(data)
    except userdata.UserDataError as exc:
        raise ProviderError(f"user_data {exc}") from None
    if not script.startswith(b"#!"):  # the loader refuses this first; never run anything else
        raise ProviderError("user_data on a local cloud must be a script starting with #!")
    return {
        SCRIPT: (script, 0o700),
        f"/etc/systemd/system/{UNIT_NAME}": (UNIT.encode(), 0o644),
        f"/etc/systemd/system/multi-user.target.d/{UNIT_NAME}.conf": (WANTS.encode(), 0o644),
    }
