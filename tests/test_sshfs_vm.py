"""`launch-vm` and `plans/sshfs-vm` end to end: real LXC VMs mounting a real home share.

One module-wide launch of two VMs (CLOUDINITD_SSHFS_REPLICA_COUNT=2) with
$HOME pointed at a test folder, so the share exports that folder, not /root.
The printed ssh command is run verbatim. The last test terminates the run
and checks that nothing is left; the fixture's finalizer cleans up anyway.
"""

from __future__ import annotations

import contextlib
import re
import shlex
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cloudinitd.homeshare import share_pid, stop_home_share
from tests.support.cli import Cli, write_plan
from tests.support.lxc import REPO, destroy_all, new_provider

LAUNCH_LINES = re.compile(
    r"Launching your (VM|2 VMs) \(this may take a minute\)\.\.\.\n"
    r"Success!\n"
    r"((?:Access your VM with: ssh .*\n){2})"
    r"Your home \((?P<home>[^)]*)\) is mounted at (?P<mount>/mnt/\S+)\n"
    r"(?P<note>Note: you run as root, so the VMs can read and write root's home \((?P=home)\)"
    r" as root \(nothing outside it\)\. To share less: launch-vm --share DIR"
    r" \(add --read-only to refuse writes\)\.\n)"
    r"Terminate your VMs with: cloudinitd terminate (?P<run>\S+)\n$"
)


@dataclass
class Launched:
    cli: Cli
    home: Path  # the folder the share exports ($HOME of launch-vm)
    run: str
    ssh: list[str]  # the printed ssh commands, verbatim
    mount: str
    out: str
    seconds: float


def vm(command: str, remote: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the printed ssh command as printed, plus BatchMode so a prompt fails instead."""
    argv = shlex.split(command)
    argv[1:1] = ["-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]
    return subprocess.run([*argv, remote], capture_output=True, text=True, timeout=timeout)


def ok(command: str, remote: str) -> str:
    proc = vm(command, remote)
    assert proc.returncode == 0, f"{remote!r} failed ({proc.returncode}): {proc.stderr}"
    return proc.stdout


def mounts(command: str, mount: str) -> int:
    """How many sshfs mounts sit at `mount` (a double mount would show 2)."""
    out = ok(command, f'awk \'$2 == "{mount}" && $3 == "fuse.sshfs"\' /proc/mounts')
    return len(out.splitlines())


def running(pid: int) -> bool:
    """True while `pid` runs (a zombie waiting for init to reap it does not count)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.fixture(scope="module")
def launched(local_net, tmp_path_factory) -> Iterator[Launched]:
    root = tmp_path_factory.mktemp("sshfs-vm")
    home = root / "user-home"
    (home / "projects").mkdir(parents=True)
    (home / "notes.txt").write_text("my notes\n")
    cli = Cli(
        root / "cloudinitd-home", env={"HOME": str(home), "CLOUDINITD_SSHFS_REPLICA_COUNT": "2"}
    )
    try:
        t0 = time.monotonic()
        result = cli(program="launch-vm", timeout=900)
        seconds = time.monotonic() - t0
        match = LAUNCH_LINES.match(result.out)
        assert match, f"unexpected launch-vm output:\n{result.out}\n--- stderr\n{result.err}"
        ssh = [line.removeprefix("Access your VM with: ") for line in match.group(2).splitlines()]
        assert match["home"] == str(home)
        yield Launched(cli, home, match["run"], ssh, match["mount"], result.out, seconds)
    finally:
        runs = cli.home / "runs"
        for run_dir in runs.iterdir() if runs.is_dir() else []:
            with contextlib.suppress(Exception):
                cli("terminate", "--quiet", run_dir.name, expect=None, timeout=600)
            stop_home_share(run_dir)
        destroy_all(new_provider(cli.home))


@pytest.mark.lxc
def test_launch_vm_prints_commands_that_work_verbatim(launched):
    print(f"\nlaunch-vm with 2 VMs took {launched.seconds:.1f}s\n{launched.out}")
    assert len(set(launched.ssh)) == 2
    for command in launched.ssh:
        assert " -i " in command and "UserKnownHostsFile=" in command
        assert ok(command, "hostname").strip().startswith("vm-")
    # The mount point is named after the home host (the bridge gateway here).
    assert launched.mount == f"/mnt/{new_provider(launched.cli.home).home_address()}"


@pytest.mark.lxc
def test_the_home_is_shared_both_ways_with_every_vm(launched):
    (launched.home / "projects" / "from-home.txt").write_text("written at home\n")
    for i, command in enumerate(launched.ssh):
        assert ok(command, f"cat {launched.mount}/notes.txt") == "my notes\n"
        assert ok(command, f"cat {launched.mount}/projects/from-home.txt") == "written at home\n"
        ok(command, f"echo 'hello from vm {i}' > {launched.mount}/from-vm-{i}.txt")
    for i in range(2):
        assert (launched.home / f"from-vm-{i}.txt").read_text() == f"hello from vm {i}\n"
    # One VM's write is seen by the other, through the home.
    assert ok(launched.ssh[1], f"cat {launched.mount}/from-vm-0.txt") == "hello from vm 0\n"


@pytest.mark.lxc
def test_status_json_holds_no_secret(launched):
    status = launched.cli("status", launched.run, "--json").json()
    text = str(status)
    assert "PRIVATE KEY" not in text
    vms = status["services"]["vm"]["instances"]
    assert {v["attributes"]["mount_point"] for v in vms} == {launched.mount}
    db = (launched.cli.home / "state.db").read_bytes()
    assert b"PRIVATE KEY" not in db
    for log in (launched.cli.home / "runs" / launched.run / "logs").iterdir():
        assert "PRIVATE KEY" not in log.read_text(errors="replace"), log


@pytest.mark.lxc
def test_running_boot_again_changes_nothing(launched):
    """The rendered boot script, run a second time on the VM: no second mount."""
    command = launched.ssh[0]
    workdir = f".cloudinitd-remote/{launched.run}.*/vm-0"  # RUN.SCOPE: one per home
    key_before = ok(command, "stat -c %Y /root/.ssh/cloudinitd-home-key")
    assert ok(command, "stat -c '%a %U:%G' /root/.ssh/cloudinitd-home-key") == "600 root:root\n"
    out = ok(command, f"cd {workdir} && CLOUDINITD_EXPORT=/dev/null sh boot.script")
    assert "already mounted" in out and "nothing to do" in out
    assert mounts(command, launched.mount) == 1
    assert ok(command, "stat -c %Y /root/.ssh/cloudinitd-home-key") == key_before


@pytest.mark.lxc
def test_repair_remounts_a_dead_mount_once(launched):
    """sshfs killed in one VM: the ready check fails, repair re-runs boot, one mount again."""
    command = launched.ssh[1]
    ok(command, "pkill -KILL -x sshfs; sleep 1")  # a crash: no clean unmount
    dead = vm(command, f"timeout 10 ls {launched.mount}")
    assert dead.returncode != 0 and "not connected" in dead.stderr
    assert mounts(command, launched.mount) == 1  # the dead mount is still there
    health = launched.cli("status", launched.run, "--check", "--json", expect=1).json()
    assert health["healthy"] is False
    launched.cli("repair", "--quiet", launched.run)
    assert mounts(command, launched.mount) == 1
    assert ok(command, f"cat {launched.mount}/notes.txt") == "my notes\n"
    assert mounts(launched.ssh[0], launched.mount) == 1  # the healthy VM was left alone
    launched.cli("status", launched.run, "--check")


@pytest.mark.lxc
def test_terminate_unmounts_and_removes_everything(launched):
    run_dir = launched.cli.home / "runs" / launched.run
    pid = share_pid(run_dir)
    assert pid is not None
    result = launched.cli("terminate", launched.run, "--json").json()
    assert result["ok"] and len(result["terminated"]) == 2
    # The terminate script ran (unmounted) before the containers went.
    for i in range(2):
        log = (run_dir / "logs" / f"vm-{i}.terminate.log").read_text()
        assert "unmounted" in log
    assert share_pid(run_dir) is None
    assert not running(pid)
    provider = new_provider(launched.cli.home)
    assert provider.find_run_instances(launched.run) == []
    leftovers = [d.name for d in provider.lxcpath.iterdir() if d.is_dir()]
    assert leftovers == []
    assert vm(launched.ssh[0], "true", timeout=30).returncode != 0
    # Files the VMs wrote stay at home.
    assert (launched.home / "from-vm-0.txt").exists()


# --- nothing launched: validation, dry runs, usage errors ------------------------------


def test_plan_validates_and_dry_runs_on_local(cli):
    cli("validate", REPO / "plans" / "sshfs-vm" / "plan.yml")
    out = cli("boot", "sshfs-vm", "--dry-run", "--var", "replicas=3").out
    assert out.count("--- vm-") == 9  # 3 instances x boot, ready, terminate
    assert "sshfs -o" in out and "PRIVATE KEY" not in out


def test_plan_validates_and_dry_runs_on_an_ec2_cloud(cli, tmp_path):
    """A small wrapper plan puts the shipped one on an EC2 cloud entry."""
    plan = write_plan(
        tmp_path,
        """
        name: sshfs-vm-on-ec2
        vars: {replicas: 2}
        clouds:
          hotel:
            provider: ec2
            endpoint: https://svc.uc.futuregrid.org:8444
            region: nimbus
            credentials: {access_key_env: CLOUDINITD_IAAS_ACCESS_KEY,
                          secret_key_env: CLOUDINITD_IAAS_SECRET_KEY}
        defaults: {cloud: hotel, image: ami-12345678, ssh_user: root}
        services:
          vm:
            count: "{{ vars.replicas }}"
            boot: sshfs-client/boot.sh.j2
            ready: sshfs-client/ready.sh.j2
            terminate: sshfs-client/terminate.sh.j2
            exports: [mount_point, home_source]
    """,
    )
    cli("validate", plan)
    report = cli(
        "boot", plan, "--dry-run", "--json", "--var", "home_host=hotel.futuregrid.org"
    ).json()
    assert [i["service"] for i in report["instances"]] == ["vm", "vm"]
    boot = report["instances"][0]["scripts"]["boot"]
    assert "sshfs -o" in boot


def test_launch_vm_dry_run_on_an_ec2_cloud_stores_no_secret(cli):
    env = {
        "CLOUDINITD_IAAS_URL": "https://svc.uc.futuregrid.org:8444",
        "CLOUDINITD_IAAS_ACCESS_KEY": "AKIAEXAMPLEEXAMPLE12",
        "CLOUDINITD_IAAS_SECRET_KEY": "very-secret-value",
        "CLOUDINITD_IAAS_IMAGE": "ami-12345678",
        "CLOUDINITD_SSHFS_REPLICA_COUNT": "3",
    }
    report = cli("--dry-run", "--json", program="launch-vm", env=env).json()
    assert len(report["instances"]) == 3
    wrapper = Path(report["plan_path"])
    text = wrapper.read_text()
    assert "access_key_env: CLOUDINITD_IAAS_ACCESS_KEY" in text
    assert "provider: ec2" in text and "ami-12345678" in text
    assert "AKIAEXAMPLE" not in text and "very-secret" not in text
    cli("validate", wrapper)
    # A real launch needs an address of this machine the cloud's VMs can reach.
    res = cli(program="launch-vm", env=env, expect=2)
    assert "home_host" in res.err and "Traceback" not in res.err
    assert res.out == ""


@pytest.mark.parametrize(
    "env, message",
    [
        ({"CLOUDINITD_SSHFS_REPLICA_COUNT": "zero"}, "CLOUDINITD_SSHFS_REPLICA_COUNT must be"),
        (
            {"CLOUDINITD_IAAS_URL": "https://x:8444", "CLOUDINITD_IAAS_ACCESS_KEY": "a"},
            "CLOUDINITD_IAAS_SECRET_KEY is not set",
        ),
        ({"CLOUDINITD_IAAS_URL": "https://x:8444"}, "CLOUDINITD_IAAS_IMAGE is not set"),
        ({"CLOUDINITD_IAAS_SSHKEYNAME": "mykey"}, "no cloud is"),
        (
            {
                "CLOUDINITD_IAAS_URL": "https://x:8444",
                "CLOUDINITD_IAAS_IMAGE": "ami-1",
                "CLOUDINITD_IAAS_SSHKEYNAME": "mykey",
            },
            "set both",
        ),
    ],
)
def test_launch_vm_usage_errors(cli, env, message):
    res = cli(program="launch-vm", env=env, expect=2)
    assert message in res.err and len(res.err.splitlines()) == 1
    assert res.out == ""


def test_launch_vm_share_usage_errors(cli, tmp_path):
    res = cli("--share", tmp_path / "missing", program="launch-vm", expect=2)
    assert res.err == f"cloudinitd: error: --share {tmp_path / 'missing'}: no such folder\n"
    res = cli("--share", tmp_path, "--var", "home_dir=/srv", program="launch-vm", expect=2)
    assert "give the folder to share once" in res.err and len(res.err.splitlines()) == 1
    assert res.out == ""


def test_launch_vm_help_names_every_variable(cli):
    out = cli("--help", program="launch-vm").out
    for name in (
        "CLOUDINITD_IAAS_URL",
        "CLOUDINITD_IAAS_ACCESS_KEY",
        "CLOUDINITD_IAAS_SECRET_KEY",
        "CLOUDINITD_IAAS_IMAGE",
        "CLOUDINITD_IAAS_SSHKEYNAME",
        "CLOUDINITD_IAAS_SSHKEY",
        "CLOUDINITD_SSHFS_REPLICA_COUNT",
        "home_host",
        "--share",
        "--read-only",
    ):
        assert name in out


@pytest.mark.lxc
def test_a_failed_launch_says_why_and_leaves_nothing_running(local_net, tmp_path):
    """The VM launches, then its boot cannot render (no such home): all of it goes again."""
    cli = Cli(tmp_path / "cloudinitd-home", env={"HOME": str(tmp_path)})
    try:
        res = cli("--var", "home_dir=/no/such/folder", program="launch-vm", expect=1)
        assert "/no/such/folder is not a folder" in res.err
        assert "Traceback" not in res.err
        assert res.out.splitlines() == [
            "Launching your VM (this may take a minute)...",
            "Launch failed (run sshfs-vm-1).",
            "Nothing is left running.",
        ]
        provider = new_provider(cli.home)
        assert provider.find_run_instances("sshfs-vm-1") == []
        assert [d for d in provider.lxcpath.iterdir() if d.is_dir()] == []
        assert share_pid(cli.home / "runs" / "sshfs-vm-1") is None
        assert cli("status", "sshfs-vm-1", "--json", expect=1).json()["status"] == "terminated"
    finally:
        destroy_all(new_provider(cli.home))
