"""`cloudinitd serve` keeping a group of local containers (two local clouds, Phantom tags).

A container killed with `lxc-stop -k` is terminated and replaced by the
reconcile loop; SetDesiredCapacity 1 removes from the last cloud first;
DeleteAutoScalingGroup leaves no container.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from pathlib import Path

import pytest

from cloudinitd.plan.model import CloudSpec
from cloudinitd.providers.local import LocalProvider
from tests.support.lxc import destroy_all, local_cli_in
from tests.support.serve import (
    Serve,
    add_user,
    create_phantom_group,
    group,
    in_service,
    wait_for,
)

pytestmark = [pytest.mark.lxc, pytest.mark.slow]
INTERVAL = 10.0


def containers(lxcpath: Path) -> list[str]:
    if not lxcpath.is_dir():
        return []
    return sorted(d.name for d in lxcpath.iterdir() if (d / "config").exists())


def test_local_group_is_kept_scaled_and_deleted(lxc_ready, tmp_path: Path):
    with local_cli_in(tmp_path) as cli:
        paths = {name: cli.home / "lxc" / name for name in ("l1", "l2")}
        cli.home.mkdir(parents=True, exist_ok=True)
        (cli.home / "clouds.yml").write_text("".join(
            f"{name}: {{provider: local, lxcpath: {path}}}\n" for name, path in paths.items()))
        server = None
        try:
            alice = add_user(cli, "alice")
            server = Serve(cli, interval=INTERVAL).start()
            client = server.client(alice)
            for name in paths:
                client.create_launch_configuration(LaunchConfigurationName=f"lc@{name}",
                                                   ImageId="debian-12", InstanceType="small")
            create_phantom_group(client, "web", "lc", "l1:2,l2:-1", 3)
            wait_for(lambda: len(in_service(client, "web")) == 3, timeout=600,
                     why="3 containers in service")
            zones = sorted(i["AvailabilityZone"] for i in in_service(client, "web"))
            assert zones == ["l1", "l1", "l2"]
            assert (len(containers(paths["l1"])), len(containers(paths["l2"]))) == (2, 1)

            victim = sorted(i["InstanceId"] for i in in_service(client, "web")
                            if i["AvailabilityZone"] == "l1")[0]
            subprocess.run(["lxc-stop", "-k", "-n", victim, "-P", str(paths["l1"])],
                           check=True, capture_output=True, timeout=60)
            killed = time.monotonic()

            def replaced() -> bool:
                ids = {i["InstanceId"] for i in in_service(client, "web")}
                return len(ids) == 3 and victim not in ids

            # Two intervals, plus room for a container to start on a loaded machine.
            wait_for(replaced, timeout=2 * INTERVAL + 120, why="the killed container replaced")
            print(f"replaced {time.monotonic() - killed:.1f}s after lxc-stop -k"
                  f" (interval {INTERVAL}s)")
            assert victim not in containers(paths["l1"])  # the dead one is gone, not left
            assert (len(containers(paths["l1"])), len(containers(paths["l2"]))) == (2, 1)

            client.set_desired_capacity(AutoScalingGroupName="web", DesiredCapacity=1)
            wait_for(lambda: [i["AvailabilityZone"] for i in group(client, "web")["Instances"]]
                     == ["l1"], timeout=300, why="1 left, on the first cloud")
            assert (len(containers(paths["l1"])), len(containers(paths["l2"]))) == (1, 0)

            client.delete_auto_scaling_group(AutoScalingGroupName="web", ForceDelete=True)
            wait_for(lambda: group(client, "web") is None, timeout=300, why="group deleted")
            assert containers(paths["l1"]) == containers(paths["l2"]) == []
            assert cli("status", "alice.web", "--json", expect=None).json()["status"] \
                == "terminated"
        finally:
            if server is not None:
                server.stop()
            for name, path in paths.items():
                with contextlib.suppress(Exception):
                    destroy_all(LocalProvider(CloudSpec(name=name, provider="local",
                                                        options={"lxcpath": str(path)}),
                                              cli.home))
