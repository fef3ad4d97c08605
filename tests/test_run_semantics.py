"""What `repair`, `reload`, `scale` and `status --check` mean for a run (issue 9, item 8).

On real sshd hosts (static services) and real LXC containers.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.cli import Cli, write_plan


def static_plan(folder: Path, host, out: Path) -> Path:
    return write_plan(folder, f"""
        name: sem
        vars:
          out: {out}
        defaults:
          ssh_key: {host.key_path}
        services:
          app:
            host: {host.address}
            ssh_port: {host.port}
            boot: boot.sh.j2
            ready: ready.sh.j2
        """, {
        "boot.sh.j2": "echo booted >> {{ vars.out }}/boots\ntouch {{ vars.out }}/healthy\n",
        "ready.sh.j2": "test -f {{ vars.out }}/healthy\n",
    })


def test_repair_of_a_terminated_run_needs_relaunch(tmp_path, sshd_hosts, cli):
    (host,) = sshd_hosts(1)
    out = tmp_path / "out"
    out.mkdir()
    plan = static_plan(tmp_path / "p", host, out)
    cli("boot", plan, "--name", "sem")
    cli("terminate", "sem")
    res = cli("repair", "sem", expect=2)
    assert "--relaunch" in res.err and "terminated" in res.err
    assert res.err.count("\n") == 1 and "Traceback" not in res.err
    assert (out / "boots").read_text().count("booted") == 1  # nothing ran again
    cli("repair", "sem", "--relaunch")
    assert (out / "boots").read_text().count("booted") == 2
    assert cli("status", "sem", "--json").json()["status"] == "ready"
    cli("terminate", "sem")


def test_status_check_shows_an_unhealthy_service_and_run(tmp_path, sshd_hosts, cli):
    (host,) = sshd_hosts(1)
    out = tmp_path / "out"
    out.mkdir()
    plan = static_plan(tmp_path / "p", host, out)
    cli("boot", plan, "--name", "sick")
    assert cli("status", "sick", "--check", "--json").json()["status"] == "ready"
    (out / "healthy").unlink()  # the ready script now fails on the host
    res = cli("status", "sick", "--check", "--json", expect=1)
    data = res.json()
    assert data["healthy"] is False
    assert data["status"] == "unhealthy"
    assert data["services"]["app"]["status"] == "unhealthy"
    text = cli("status", "sick", "--check", expect=1).out
    assert text.splitlines()[0].endswith(": unhealthy"), text
    assert "  app: unhealthy" in text
    cli("repair", "sick")  # re-runs boot, which makes the host healthy again
    assert cli("status", "sick", "--check", "--json").json()["status"] == "ready"
    cli("terminate", "sick")



def _folders(cli: Cli) -> list[str]:
    folder = cli.home / "local" / "containers"
    return sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


@pytest.mark.lxc
@pytest.mark.slow
def test_dead_container_missing_instance_scale_and_reload(local_cli: Cli, tmp_path):
    cli = local_cli
    plan = write_plan(tmp_path / "p", """
        name: web
        vars:
          n: 1
        services:
          web:
            cloud: local
            count: "{{ vars.n }}"
            boot: boot.sh.j2
            ready: ready.sh.j2
        """, {"boot.sh.j2": "echo ok > /root/ok\n", "ready.sh.j2": "test -f /root/ok\n"})
    cli("boot", plan, "--name", "w")
    (dead,) = _folders(cli)

    # A container that died: unhealthy at service and run level, then replaced and removed.
    subprocess.run(["lxc-stop", "-k", "-n", dead, "-P", str(cli.home / "local" / "containers")],
                   check=True, capture_output=True)
    data = cli("status", "w", "--check", "--json", expect=1).json()
    assert data["status"] == "unhealthy" and data["services"]["web"]["status"] == "unhealthy"
    assert [i["state"] for i in data["services"]["web"]["instances"]] == ["missing"]
    cli("repair", "w")
    folders = _folders(cli)
    assert len(folders) == 1 and dead not in folders, folders
    data = cli("status", "w", "--check", "--json").json()
    assert data["status"] == "ready" and data["services"]["web"]["count_source"] == "plan"

    # A scale override is shown as such, and a reload drops it (and says so).
    cli("scale", "w", "web", "3")
    data = cli("status", "w", "--json").json()
    assert data["services"]["web"]["count_source"] == "scale"
    assert data["services"]["web"]["count"] == 3
    assert "count 3 set by scale" in cli("status", "w").out
    res = cli("reload", plan, "--name", "w", "--var", "n=1", "--json")
    assert "dropped the scale override web=3" in res.err
    assert res.json()["dropped_scale_overrides"] == {"web": 3}
    data = cli("status", "w", "--json").json()
    assert data["services"]["web"]["count_source"] == "plan"
    assert len(data["services"]["web"]["instances"]) == 1
    assert len(_folders(cli)) == 1
    cli("terminate", "w")
    assert _folders(cli) == []
