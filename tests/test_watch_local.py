"""`watch` and leases on real LXC containers (the local provider), through the CLI.

- a container stopped hard (`lxc-stop -k`) is replaced by `watch --once`, booted,
  and the service that lists the web servers is re-configured with the new one;
- a sensor reading a file the test writes inside the instances grows the service,
  then shrinks it, within its bounds, and the dependent follows each time;
- a run's lifetime ends its containers with no watcher and no cron running (the
  provider's lease keeper), and the next `watch` records the run as terminated.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from cloudinitd.providers import hostnet
from tests.support.cli import Cli, write_plan
from tests.support.lxc import ssh

pytestmark = [pytest.mark.lxc, pytest.mark.slow]

SCRIPTS = {
    "web.sh": """
        #!/bin/sh
        set -e
        mkdir -p /srv && hostname > /srv/booted
        """,
    "ready.sh": """
        #!/bin/sh
        test -f /srv/booted
        """,
    "lb.sh.j2": """
        #!/bin/sh
        set -e
        mkdir -p /srv
        : > /srv/backends.new
        {% for w in web.instances %}echo {{ w.address }} >> /srv/backends.new
        {% endfor %}mv /srv/backends.new /srv/backends
        """,
    "load.sh": """
        #!/bin/sh
        cat /srv/load 2>/dev/null || echo 50
        """,
}
PLAN = """
name: kept
{lifetime}
services:
  web:
    count: 2
    boot: web.sh
    ready: ready.sh
    autoscale:
      min: 1
      max: 3
      sensor: load.sh
      thresholds: {{above: 80, below: 20}}
      cooldown: 1s
  lb:
    boot: lb.sh.j2
"""


def _status(cli: Cli, run: str) -> dict:
    return cli("status", run, "--json").json()["services"]


def _web(cli: Cli, run: str) -> dict[int, dict]:
    return {i["index"]: i for i in _status(cli, run)["web"]["instances"]}


def _backends(cli: Cli, run: str) -> list[str]:
    lb = _status(cli, run)["lb"]["instances"][0]
    key = cli.home / "runs" / run / "id_ed25519"
    out = ssh(lb["address"], key, "cat /srv/backends")
    assert out.returncode == 0, out.stderr
    return sorted(out.stdout.split())


def _containers(cli: Cli) -> list[str]:
    folder = cli.home / "local" / "containers"
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("cid-")) \
        if folder.exists() else []


def _set_load(cli: Cli, run: str, value: int) -> None:
    cli("exec", run, "--service", "web", "--", f"echo {value} > /srv/load")


def test_watch_replaces_a_stopped_container_and_scales_by_a_sensor(local_cli: Cli, tmp_path):
    cli = local_cli
    plan = write_plan(tmp_path / "p", PLAN.format(lifetime=""), SCRIPTS)
    cli("boot", plan, "--name", "kw", "--json")
    try:
        web = _web(cli, "kw")
        assert _backends(cli, "kw") == sorted(w["address"] for w in web.values())
        lxcpath = cli.home / "local" / "containers"
        subprocess.run(["lxc-stop", "-k", "-n", web[1]["instance_id"], "-P", str(lxcpath)],
                       check=True, capture_output=True)
        report = cli("watch", "kw", "--once", "--json").json()
        assert report["ok"], report
        assert [(a["kind"], a["index"]) for a in report["actions"]] == [("replace", 1)]
        assert report["readings"]["web"] == [50.0]  # web-0 only: web-1 was being replaced
        now = _web(cli, "kw")
        assert now[0]["instance_id"] == web[0]["instance_id"]
        assert now[1]["instance_id"] != web[1]["instance_id"]
        assert web[1]["instance_id"] not in _containers(cli)
        key = cli.home / "runs" / "kw" / "id_ed25519"
        assert ssh(now[1]["address"], key, "cat /srv/booted").stdout.strip() == "web-1"
        assert _backends(cli, "kw") == sorted(w["address"] for w in now.values())

        _set_load(cli, "kw", 95)
        report = cli("watch", "kw", "--once", "--json").json()
        assert [a["detail"].split(":")[0] for a in report["actions"]] == ["2 -> 3"], report
        grown = _web(cli, "kw")
        assert sorted(grown) == [0, 1, 2]
        assert _backends(cli, "kw") == sorted(w["address"] for w in grown.values())

        _set_load(cli, "kw", 5)
        for _ in range(3):  # each check moves one step (cooldown 1 s); min is 1
            time.sleep(1.1)
            cli("watch", "kw", "--once", "--json")
        shrunk = _web(cli, "kw")
        assert list(shrunk) == [0]
        assert _backends(cli, "kw") == [shrunk[0]["address"]]
        events = [e for e in cli("history", "kw", "--json").json()["events"]
                  if e["kind"] in ("replace", "autoscale")]
        assert [e["message"].split(":")[0] for e in events] == \
            ["instance is error", "2 -> 3", "3 -> 2", "2 -> 1"]
    finally:
        cli("terminate", "kw", "--json")
    assert _containers(cli) == []


def _keepers(cli: Cli) -> list[str]:
    out = subprocess.run(["pgrep", "-af", "cloudinitd.providers.lease"], capture_output=True,
                         text=True).stdout
    return [line for line in out.splitlines() if str(cli.home) in line]


def test_a_lifetime_ends_the_containers_with_nothing_watching(local_cli: Cli, tmp_path):
    cli = local_cli
    plan = write_plan(tmp_path / "p", PLAN.format(lifetime="lifetime: 45s"), SCRIPTS)
    cli("boot", plan, "--name", "kl", "--json")
    try:
        expires = cli("status", "kl", "--json").json()["expires"]
        assert len(_containers(cli)) == 3 and len(_keepers(cli)) == 3
        # No cloudinitd runs from here: only the provider's keepers.
        deadline = expires + 120
        while (_containers(cli) or _keepers(cli)) and time.time() < deadline:
            time.sleep(1)  # a keeper ends its container, frees its address, then exits
        logs = "".join(p.read_text() for p in (cli.home / "local" / "leases").glob("*.log"))
        assert _containers(cli) == [], f"the lease keepers did not end the containers: {logs}"
        assert _keepers(cli) == [], logs
        assert logs.count("lease over") == 3, logs
        assert not [o for o in hostnet.leases().values() if str(cli.home) in o], \
            "a keeper left an address leased"
        report = cli("watch", "kl", "--once", "--json").json()
        assert report["state"] == "terminated", report
        assert cli("status", "kl", "--json", expect=1).json()["status"] == "terminated"
    finally:
        cli("terminate", "kl", "--json", expect=None)
    assert _containers(cli) == []
