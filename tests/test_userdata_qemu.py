"""UserData on a qemu VM really runs: a gzip'd multipart (as Terraform's cloudinit_config
sends) merged into the NoCloud seed: its cloud-config's runcmd and its script both run at
first boot, and the project's own keys and hostname still apply (one VM, ~40-60 s under TCG).
"""

from __future__ import annotations

import gzip
import secrets
import time
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path

import pytest

from cloudinitd.providers.base import RUNNING, LaunchRequest
from cloudinitd.providers.qemu import QemuProvider
from tests.support.lxc import make_keypair, ssh

pytestmark = [pytest.mark.qemu, pytest.mark.slow]


def test_a_gzip_multipart_runs_at_first_boot_beside_the_projects_seed(
    qemu_provider: QemuProvider, tmp_path: Path
):
    key = make_keypair(tmp_path / "keys")
    callers = make_keypair(tmp_path / "callers").public.split()[1]
    message = MIMEMultipart()
    message.attach(MIMEText("#cloud-config\nruncmd:\n - [sh, -c, 'echo runcmd > /root/rc']\n"
                            f"ssh_authorized_keys: [ssh-ed25519 {callers} callers-own]\n",
                            "cloud-config"))
    message.attach(MIMEText("#!/bin/sh\necho \"script $(id -u)\" > /root/script\n",
                            "x-shellscript"))
    run = f"qu{secrets.token_hex(3)}"
    request = LaunchRequest(
        run=run, plan="p", service="vm", cloud="qemu", indexes=[0],
        client_token=secrets.token_hex(8), tags={"run": run, "service": "vm"},
        ssh_user="root", ssh_public_key=key.public, hostnames=["udvm-0"],
        image="debian-12", size="small",
        options={"user_data": gzip.compress(message.as_bytes())},
    )
    (info,) = qemu_provider.launch(request, lambda i, inf: None)
    (info,) = qemu_provider.wait_running([info.instance_id], timeout=400)
    assert info.state == RUNNING
    out = None
    for _ in range(40):  # sshd may answer before cloud-init has written every key
        out = ssh(info.address, key.private,
                  "hostname; cat /root/rc /root/script; cat /root/.ssh/authorized_keys;"
                  " cat /var/lib/cloud/instance/cloud-config.txt >&2")
        if out.returncode == 0:
            break
        time.sleep(3)
    assert out is not None and out.returncode == 0, (out.stdout, out.stderr)
    lines = out.stdout.splitlines()
    assert lines[:3] == ["udvm-0", "runcmd", "script 0"]
    keys = "\n".join(lines[3:])
    assert key.public.split()[1] in keys, out.stderr
    assert callers in keys, out.stderr  # both: the caller's list is appended to, not replaced
    qemu_provider.terminate([info.instance_id])
