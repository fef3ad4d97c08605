"""plans/nfs-cluster end to end through the CLI, on real QEMU VMs with real NFS.

Also: the same plan pointed at an EC2 cloud validates and dry-runs, and on
the `local` (LXC) provider, whose kernel has no NFS here, it fails early
with a message that names the qemu provider.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import pytest
import yaml

from tests.support.cli import Cli
from tests.support.lxc import ssh
from tests.support.qemu import destroy_all, leftovers

REPO = Path(__file__).resolve().parents[1]
PLAN = REPO / "plans" / "nfs-cluster" / "plan.yml"


def _plan_copy(tmp_path: Path, **changes) -> Path:
    """The shipped plan, edited; its scripts still come from the bootlevels library."""
    data = yaml.safe_load(PLAN.read_text())
    for key, value in changes.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    out = tmp_path / "nfs-plan" / "plan.yml"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out


def _exported_clients(exports: str) -> dict[str, set[str]]:
    """/etc/exports text -> {directory: {client address, ...}}."""
    out: dict[str, set[str]] = {}
    for line in exports.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        directory, *clients = line.split()
        out.setdefault(directory, set()).update(re.sub(r"\(.*\)$", "", c) for c in clients)
    return out


def test_plan_on_an_ec2_cloud_validates_and_dry_runs(cli: Cli, tmp_path: Path):
    plan = _plan_copy(
        tmp_path,
        clouds={
            "hotel": {
                "provider": "ec2",
                "endpoint": "http://127.0.0.1:9",
                "region": "nimbus",
                "credentials": {"profile": "hotel"},
            }
        },
        defaults={"cloud": "hotel", "image": "ami-12345678", "ssh_user": "debian"},
    )
    cli("validate", plan)
    report = cli("boot", plan, "--dry-run", "--json", "--var", "compute_count=3").json()
    assert report["levels"] == [["head"], ["compute"], ["authorize"]]
    by = {(i["service"], i["index"]): i for i in report["instances"]}
    assert sorted(by) == [
        ("authorize", 0),
        ("compute", 0),
        ("compute", 1),
        ("compute", 2),
        ("head", 0),
    ]
    # authorize renders the exports for exactly the three compute addresses.
    compute_addresses = " ".join(by[("compute", i)]["address"] for i in range(3))
    assert f"set -- {compute_addresses} \n" in by[("authorize", 0)]["scripts"]["boot"]
    assert f"SERVER={by[('head', 0)]['address']}\n" in by[("compute", 1)]["scripts"]["boot"]


@pytest.mark.lxc
@pytest.mark.slow
def test_plan_on_lxc_fails_early_naming_the_qemu_provider(local_net, tmp_path: Path):
    home = tmp_path / "home"
    cli = Cli(home)
    plan = _plan_copy(tmp_path, defaults={"cloud": "local"}, vars={"compute_count": 1})
    run = f"nfslxc{secrets.token_hex(2)}"
    try:
        result = cli("boot", plan, "--name", run, "--json", "-q", expect=1, timeout=600)
        report = result.json()
        head = report["services"]["head"]
        assert head["state"] == "failed"
        assert head["step"] == "boot"
        message = head["error"] + head.get("log_tail", "")
        assert "lacks NFS server support" in message
        assert "qemu provider" in message
        assert report["services"]["authorize"]["state"] == "skipped"
    finally:
        cli("terminate", run, "-q", expect=None, timeout=600)


@pytest.mark.qemu
@pytest.mark.slow
def test_nfs_cluster_shares_home_across_nodes_and_reauthorises_on_scale(qemu_net, tmp_path: Path):
    home = tmp_path / "home"
    cli = Cli(home)
    run = f"nfs{secrets.token_hex(2)}"
    taps: list[str] = []
    try:
        boot = cli("boot", PLAN, "--name", run, "--json", "-q", timeout=1200).json()
        assert boot["ok"], boot
        status = cli("status", run, "--json").json()
        assert status["status"] == "ready"
        services = status["services"]
        assert {n: s["status"] for n, s in services.items()} == {
            "head": "ready",
            "compute": "ready",
            "authorize": "ready",
        }
        (head,) = services["head"]["instances"]
        computes = sorted(services["compute"]["instances"], key=lambda i: i["index"])
        assert [c["hostname"] for c in computes] == ["compute-0", "compute-1"]
        assert head["accel"] in ("kvm", "tcg")
        taps = [i["tap"] for i in [head, *computes]]
        key = home / "runs" / run / "id_ed25519"

        def on(inst: dict, command: str) -> str:
            out = ssh(inst["address"], key, command)
            assert out.returncode == 0, f"{inst['hostname']}: {command}: {out.stderr}"
            return out.stdout

        # A file written on compute-0 is read on compute-1 and on the head.
        token = secrets.token_hex(8)
        on(computes[0], f"echo {token} > /home/shared-{token}")
        assert on(computes[1], f"cat /home/shared-{token}").strip() == token
        assert on(head, f"cat /home/shared-{token}").strip() == token
        assert "nfs4" in on(computes[1], "findmnt -n -o FSTYPE --mountpoint /srv/scratch")
        assert f"{head['address']}:/home" in on(computes[0], "cat /etc/fstab")

        # The head exports to exactly the two compute nodes.
        expected = {c["address"] for c in computes}
        exports = _exported_clients(on(head, "cat /etc/exports"))
        assert exports == {"/home": expected, "/srv/scratch": expected}
        live = on(head, "exportfs -v")
        assert all(c["address"] in live for c in computes)

        # Scale down: authorize re-runs and the head exports to compute-0 only.
        cli("scale", run, "compute", "1", "-q", "--json", timeout=900)
        exports = _exported_clients(on(head, "cat /etc/exports"))
        assert exports == {
            "/home": {computes[0]["address"]},
            "/srv/scratch": {computes[0]["address"]},
        }
        assert on(computes[0], f"cat /home/shared-{token}").strip() == token
    finally:
        cli("terminate", run, "-q", expect=None, timeout=900)
        found = leftovers(home, taps)
        destroy_all(home)
    assert found == []
