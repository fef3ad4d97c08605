"""UserData on a local (LXC) cloud really runs: a gzip'd `#!` script given to `cloudinitd
serve` runs at first boot, as root, inside the container, its output in the container's
log; a plan's script runs once (not again after a reboot); what such a cloud cannot apply
is refused before anything starts.
"""

from __future__ import annotations

import base64
import gzip
import subprocess
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.support.cli import write_plan
from tests.support.lxc import local_cli_in
from tests.support.serve import Serve, add_user, create_phantom_group, in_service, wait_for

pytestmark = [pytest.mark.lxc, pytest.mark.slow]

SCRIPT = b"""#!/bin/sh
echo "uid $(id -u) host $(hostname)" >> /root/user-data-ran
echo hello-from-user-data
"""
PACKED = gzip.compress(SCRIPT)  # once: gzip writes the time into its header


def inside(lxcpath: Path, name: str, command: str) -> subprocess.CompletedProcess:
    return subprocess.run(["lxc-attach", "-n", name, "-P", str(lxcpath), "--", "sh", "-c",
                           command], capture_output=True, text=True, timeout=60)


def test_a_gzip_script_runs_once_at_first_boot_in_the_container(lxc_ready, tmp_path: Path):
    with local_cli_in(tmp_path) as cli:
        lxcpath = cli.home / "lxc" / "l1"
        cli.home.mkdir(parents=True, exist_ok=True)
        (cli.home / "clouds.yml").write_text(f"l1: {{provider: local, lxcpath: {lxcpath}}}\n")
        server = None
        try:
            alice = add_user(cli, "alice")
            server = Serve(cli, interval=5.0).start()
            client = server.client(alice)
            for params in ({"UserData": "#cloud-config\nruncmd: [true]\n"},
                           {"KeyName": "mine"}):
                with pytest.raises(ClientError) as err:
                    client.create_launch_configuration(
                        LaunchConfigurationName="bad@l1", ImageId="debian-12",
                        InstanceType="small", **params)
                assert err.value.response["Error"]["Code"] == "ValidationError"
            client.create_launch_configuration(
                LaunchConfigurationName="lc@l1", ImageId="debian-12", InstanceType="small",
                UserData=PACKED)
            (lc,) = client.describe_launch_configurations()["LaunchConfigurations"]
            assert base64.b64decode(lc["UserData"]) == PACKED
            create_phantom_group(client, "ud", "lc", "l1:-1", 1)
            wait_for(lambda: len(in_service(client, "ud")) == 1, timeout=600,
                     why="1 container in service")
            (instance,) = in_service(client, "ud")
            name = instance["InstanceId"]

            def ran() -> bool:
                log = inside(lxcpath, name, "cat /var/log/cloudinitd-user-data.log")
                return "cloudinitd: user data exited 0" in log.stdout

            wait_for(ran, timeout=120, why="the user data script finished")
            out = inside(lxcpath, name,
                         "cat /root/user-data-ran /var/log/cloudinitd-user-data.log")
            hostname = inside(lxcpath, name, "hostname").stdout.strip()
            assert out.stdout.splitlines()[0] == f"uid 0 host {hostname}"  # as root, inside
            assert "hello-from-user-data" in out.stdout
            mode = inside(lxcpath, name, "stat -c %a /var/lib/cloudinitd/user-data")
            assert mode.stdout.strip() == "700"  # the caller's, private to root

            client.delete_auto_scaling_group(AutoScalingGroupName="ud", ForceDelete=True)
            wait_for(lambda: not any((lxcpath / d / "config").exists()
                                     for d in (lxcpath.iterdir() if lxcpath.is_dir() else ())),
                     timeout=300, why="the container gone")
        finally:
            if server is not None:
                server.stop()


def test_a_plans_user_data_script_runs_and_stays_out_of_the_store_and_output(local_cli,
                                                                             tmp_path: Path):
    marker = "private-marker-7f3a"  # stands for a secret in the caller's user data
    plan = write_plan(tmp_path / "ud", f"""
        name: ud
        services:
          web:
            user_data: |
              #!/bin/sh
              # {marker}
              echo "uid $(id -u)" > /root/ud-ran
            boot: wait.sh.j2
            exports: [ran]
        """, {"wait.sh.j2": """
        # The user data runs beside the boot steps (as cloud-final on a cloud): wait for it.
        for i in $(seq 120); do
          grep -q 'user data exited 0' /var/log/cloudinitd-user-data.log 2>/dev/null && break
          sleep 1
        done
        echo "ran=$(cat /root/ud-ran)" > "$CLOUDINITD_EXPORT"
        """})
    booted = local_cli("boot", plan, "--name", "ud", "--json")
    status = local_cli("status", "ud", "--json")
    assert status.json()["services"]["web"]["instances"][0]["attributes"]["ran"] == "uid 0"
    logs = local_cli("logs", "ud", "web")
    for text in (booted.out, booted.err, status.out, logs.out):
        assert marker not in text
    for path in [*local_cli.home.glob("state.db*"), *(local_cli.home / "runs").rglob("*")]:
        if path.is_file():
            assert marker.encode() not in path.read_bytes(), path

    # Once per instance: the unit starting again (as at every boot) does not run it again.
    (instance,) = status.json()["services"]["web"]["instances"]
    lxcpath, name = local_cli.home / "local" / "containers", instance["instance_id"]
    again = inside(lxcpath, name, "systemctl restart cloudinitd-user-data.service &&"
                   " cat /root/ud-ran && systemctl show -p ConditionResult"
                   " cloudinitd-user-data.service")
    assert again.stdout.splitlines() == ["uid 0", "ConditionResult=no"], again.stderr
    local_cli("terminate", "ud")
