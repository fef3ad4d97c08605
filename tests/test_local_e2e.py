"""The shipped hello-cluster plan end to end on real LXC containers, through the CLI."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.cli import Cli, write_plan
from tests.support.lxc import ssh

pytestmark = [pytest.mark.lxc, pytest.mark.slow]



def _containers(home: Path) -> list[str]:
    folder = home / "local" / "containers"
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) if folder.exists() else []


def _processes(pattern: str) -> str:
    return subprocess.run(["pgrep", "-af", pattern], capture_output=True, text=True).stdout


def test_hello_cluster_three_levels_five_instances(local_cli: Cli):
    cli = local_cli
    booted = cli("boot", "hello-cluster", "--name", "hello", "--json").json()
    assert booted["ok"] is True, booted

    status = cli("status", "hello", "--json").json()
    instances = [i for s in status["services"].values() for i in s["instances"]]
    assert len(instances) == 5
    assert {i["state"] for i in instances} == {"running"}
    assert all(i["address"].startswith(cli.net.subnet.rsplit(".", 2)[0]) for i in instances)
    web = status["services"]["web"]["instances"]
    assert sorted(w["attributes"]["url"] for w in web) == sorted(
        f"http://{w['address']}:8080/" for w in web)

    # Attributes flowed: each page shows the store's greeting and address.
    key = cli.home / "runs" / "hello" / "id_ed25519"
    store_addr = status["services"]["store"]["instances"][0]["address"]
    page = ssh(web[1]["address"], key, "cat /srv/hello/index.html").stdout
    assert "hello from cloudinitd" in page and store_addr in page
    # /etc/hosts in every instance names the run's instances.
    hosts = ssh(web[0]["address"], key, "cat /etc/hosts").stdout
    assert "store-0" in hosts and "probe-0" in hosts

    checked = cli("status", "hello", "--check", "--json").json()
    assert checked["healthy"] is True

    # Scale the middle level: the probe (which lists every web server) re-runs.
    cli("scale", "hello", "web", "2")
    after = cli("status", "hello", "--json").json()
    assert len(after["services"]["web"]["instances"]) == 2
    probe_log = cli("logs", "hello", "probe").out
    assert probe_log.count("ok http://") >= 5  # 3 pages at boot, then 2 after scaling

    cli("terminate", "hello")
    assert _containers(cli.home) == []
    assert not Path("/sys/class/net", cli.net.bridge).exists()
    assert f"/{cli.net.bridge}" not in _processes("apt-cacher-ng")


def test_boot_script_installs_a_package_through_the_proxy(local_cli: Cli, tmp_path):
    plan = write_plan(tmp_path / "apt", """
        name: apt
        services:
          tool:
            cloud: local
            boot: install.sh.j2
            exports: [jq_version]
        """, {"install.sh.j2": """
        set -e
        apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q jq
        echo "jq_version=$(jq --version)" > "$CLOUDINITD_EXPORT"
        """})
    local_cli("boot", plan, "--name", "apt")
    status = local_cli("status", "apt", "--json").json()
    assert status["services"]["tool"]["instances"][0]["attributes"]["jq_version"].startswith("jq-")
    local_cli("terminate", "apt")
    assert _containers(local_cli.home) == []
