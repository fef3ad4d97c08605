"""SIGKILL (and Ctrl-C) the orchestrator in the middle of a boot; then terminate or repair.

Kill points are chosen by watching what the boot has done so far (container
folders, sidecars, configs, address leases, store events, progress lines, the
test cloud's call counts), never by a timer alone. After each kill:
- `terminate RUN` must leave no container, folder or lease of the run (and the
  test bridge must go, as nothing holds it any more), or no live instance on
  the EC2 test cloud;
- at some points `repair RUN` instead must converge to exactly the planned
  instances, all running, with no duplicates.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cloudinitd.providers import hostnet
from tests.support.cli import BIN, Cli, write_plan
from tests.support.lxc import local_cli_in, mounts_under, wait_no_loops
from tests.support.testcloud import ACCESS_KEY, SECRET_KEY, TestCloud
from tests.test_ec2_e2e import AK_ENV, SK_ENV
from tests.test_ec2_e2e import crash_plan as ec2_crash_plan

COUNT = 10
LXC_TOOLS = ("lxc-start", "lxc-stop", "lxc-info", "lxc-destroy", "lxc-ls", "lxc-attach")


# -- watching a boot ----------------------------------------------------------------


@dataclass
class Seen:
    """What a boot has done so far, from the outside."""

    dirs: int = 0
    sidecars: int = 0
    configs: int = 0
    half_made: int = 0  # a sidecar, no config yet
    leases: int = 0
    events: dict[str, int] = field(default_factory=dict)
    lines: str = ""


class Boot:
    """`cloudinitd boot` in the background, its stderr collected, killable by pid."""

    def __init__(self, cli: Cli, plan: Path, run: str):
        self.cli, self.run = cli, run
        self.proc = subprocess.Popen(
            [str(BIN / "cloudinitd"), "boot", str(plan), "--name", run],
            env=cli.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True, start_new_session=True)
        self.err: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.err.append(line)

    def events(self) -> dict[str, int]:
        db = self.cli.home / "state.db"
        if not db.exists():
            return {}
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
                rows = conn.execute("SELECT kind, COUNT(*) FROM events WHERE run = ?"
                                    " GROUP BY kind", (self.run,)).fetchall()
        except sqlite3.OperationalError:  # the store is being created
            return {}
        return dict(rows)

    def seen(self) -> Seen:
        folder = self.cli.home / "local" / "containers"
        dirs = [d for d in folder.iterdir() if d.is_dir() and d.name.startswith("cid-")] \
            if folder.is_dir() else []
        sidecars = [d for d in dirs if (d / "cloudinitd.json").exists()]
        configs = [d for d in dirs if (d / "config").exists()]
        return Seen(dirs=len(dirs), sidecars=len(sidecars), configs=len(configs),
                    half_made=len([d for d in sidecars if not (d / "config").exists()]),
                    leases=len(hostnet.leases()), events=self.events(),
                    lines="".join(self.err))

    def kill_when(self, point: Callable[[Seen], bool], what: str, sig: int = signal.SIGKILL,
                  timeout: float = 300) -> Seen:
        deadline = time.monotonic() + timeout
        try:
            while True:
                seen = self.seen()
                if point(seen):
                    break
                assert self.proc.poll() is None, (
                    f"boot exited {self.proc.returncode} before {what}:\n{seen.lines}")
                assert time.monotonic() < deadline, f"never saw {what}: {seen}"
                time.sleep(0.002)
            os.kill(self.proc.pid, sig)
            if sig == signal.SIGKILL:
                self.proc.wait(timeout=30)
            return seen
        except BaseException:
            self.stop()
            raise

    def finish(self, timeout: float) -> tuple[int, str]:
        """Wait for the boot to exit (killed if it outlives `timeout`): its status and stderr."""
        try:
            code = self.proc.wait(timeout=timeout)
        finally:
            self.stop()
        self._reader.join(timeout=10)
        return code, "".join(self.err)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)


def _lxc_tool_running(lxcpath: Path) -> bool:
    """An lxc-* command a killed boot left running (an lxc-start finishing its job)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and os.path.basename(argv[0].decode(errors="replace")) in LXC_TOOLS \
                and str(lxcpath).encode() in b" ".join(argv):
            return True
    return False


def wait_orphans(lxcpath: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while _lxc_tool_running(lxcpath):
        assert time.monotonic() < deadline, "lxc commands of the killed boot never finished"
        time.sleep(0.05)


# -- local (LXC) ------------------------------------------------------------------------

WAITING = f" waiting: {COUNT} instance(s)"  # all launched, waiting for them to run
# (name, point, then): `then` is "terminate" or "repair".
LOCAL_POINTS: list[tuple[str, Callable[[Seen], bool], str]] = [
    ("first-folder", lambda s: s.dirs >= 1, "terminate"),
    ("half-made", lambda s: s.half_made >= 1, "terminate"),
    ("three-leases", lambda s: s.leases >= 3, "terminate"),
    ("six-folders", lambda s: s.dirs >= 6, "terminate"),
    ("first-recorded", lambda s: s.events.get("launched", 0) >= 1, "terminate"),
    ("all-recorded", lambda s: s.events.get("launched", 0) >= COUNT, "terminate"),
    ("waiting-to-run", lambda s: WAITING in s.lines, "terminate"),
    ("waiting-for-ssh", lambda s: " ssh: " in s.lines, "terminate"),
    ("boot-scripts", lambda s: " boot: running boot script" in s.lines, "terminate"),
    ("half-configured", lambda s: s.events.get("configured", 0) >= COUNT // 2, "terminate"),
    ("half-made", lambda s: s.half_made >= 1, "repair"),
    ("recorded-not-started", lambda s: s.events.get("launched", 0) >= COUNT
     and WAITING not in s.lines, "repair"),
    ("mid-configure", lambda s: s.events.get("configured", 0) >= 3, "repair"),
]


@pytest.fixture(scope="module")
def crash_cli(lxc_ready, tmp_path_factory):
    with local_cli_in(tmp_path_factory.mktemp("crash")) as cli:  # one home for every kill point
        yield cli


@pytest.fixture(scope="module")
def crash_plan(tmp_path_factory) -> Path:
    return write_plan(tmp_path_factory.mktemp("plan"), f"""
        name: crash
        services:
          web:
            cloud: local
            count: {COUNT}
            boot: boot.sh.j2
        """, {"boot.sh.j2": "echo booted {{ self.index }} > /root/booted\n"})


def _leftovers(cli: Cli) -> tuple[list[str], dict[str, str]]:
    folder = cli.home / "local" / "containers"
    dirs = sorted(d.name for d in folder.iterdir() if d.is_dir()
                  and not d.name.startswith(".")) if folder.is_dir() else []
    return dirs, hostnet.leases()


def _running_containers(cli: Cli) -> dict[str, str]:
    out = subprocess.run(["lxc-ls", "-P", str(cli.home / "local" / "containers"), "-f",
                          "-F", "NAME,STATE"], capture_output=True, text=True).stdout
    return dict(line.split()[:2] for line in out.splitlines()[1:] if line.strip())


@pytest.mark.lxc
@pytest.mark.slow
@pytest.mark.parametrize(("name", "point", "then"), LOCAL_POINTS,
                         ids=[f"{p[0]}-{p[2]}" for p in LOCAL_POINTS])
def test_sigkill_local_boot(crash_cli: Cli, crash_plan: Path, name, point, then):
    cli, run = crash_cli, f"k-{name}-{then}"
    boot = Boot(cli, crash_plan, run)
    seen = boot.kill_when(point, name)
    lxcpath = cli.home / "local" / "containers"
    wait_orphans(lxcpath)
    try:
        if then == "repair":
            res = cli("repair", run, "--json", expect=None)
            assert res.code == 0, f"killed at {seen}\n{res.out}\n{res.err}"
            status = cli("status", run, "--json").json()
            web = status["services"]["web"]["instances"]
            assert sorted(i["index"] for i in web) == list(range(COUNT)), web
            assert {i["state"] for i in web} == {"running"}
            dirs, leases = _leftovers(cli)
            assert len(dirs) == COUNT, f"duplicates or leftovers after repair: {dirs}"
            assert len(leases) == COUNT, leases
            states = _running_containers(cli)
            assert sorted(states) == dirs and set(states.values()) == {"RUNNING"}, states
    finally:
        res = cli("terminate", run, "--json", expect=None)
    assert res.code == 0, f"killed at {seen}\n{res.out}\n{res.err}"
    dirs, leases = _leftovers(cli)
    assert dirs == [], f"killed at {name} ({seen}): folders left: {dirs}"
    assert leases == {}, f"killed at {name} ({seen}): leases left: {leases}"
    assert mounts_under(lxcpath) == [], f"killed at {name}: still mounted"
    assert wait_no_loops(lxcpath) == [], f"killed at {name}: loop devices left"
    assert not Path("/sys/class/net", cli.net.bridge).exists(), "the bridge stayed up"


@pytest.mark.lxc
@pytest.mark.slow
def test_ctrl_c_local_boot_records_every_container(crash_cli: Cli, crash_plan: Path):
    """Ctrl-C while containers are being made: the launch under way finishes and is
    recorded; what is said to be live is what exists; repair then completes the run."""
    cli, run = crash_cli, "ctrl-c-local"
    boot = Boot(cli, crash_plan, run)
    boot.kill_when(lambda s: s.events.get("launched", 0) >= 2, "two recorded",
                   sig=signal.SIGINT)
    code, err = boot.finish(timeout=120)
    try:
        assert code == 130, err
        status = cli("status", run, "--json", expect=None).json()
        recorded = status["services"]["web"]["instances"]
        dirs, _ = _leftovers(cli)
        assert len(recorded) == len(dirs) == COUNT, (len(recorded), dirs, err)
        assert f"{COUNT} instance(s) live (web: {COUNT})" in err, err
        assert f"cloudinitd repair {run}" in err and f"cloudinitd terminate {run}" in err
        cli("repair", run)
        states = _running_containers(cli)
        assert len(states) == COUNT and set(states.values()) == {"RUNNING"}, states
    finally:
        cli("terminate", run, expect=None)
    assert _leftovers(cli) == ([], {})


# -- EC2 test cloud ----------------------------------------------------------------------


# (action whose answer the cloud holds back, which call of it, then).
EC2_POINTS = [
    ("ImportKeyPair", 1, "terminate"),
    ("RunInstances", 1, "terminate"),
    ("RunInstances", 2, "terminate"),
    ("CreateTags", 1, "terminate"),
    ("CreateTags", 4, "terminate"),
    ("CreateTags", 9, "terminate"),
    ("DescribeInstances", 1, "terminate"),
    ("DescribeInstances", 2, "terminate"),
    ("RunInstances", 1, "repair"),
    ("RunInstances", 2, "repair"),
    ("CreateTags", 5, "repair"),
    ("DescribeInstances", 1, "repair"),
]


@pytest.fixture
def ec2cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "home", env={AK_ENV: ACCESS_KEY, SK_ENV: SECRET_KEY})


def _live_by_service(cloud: TestCloud, run: str) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for inst in cloud.live_instances(run):
        tags = {t["Key"]: t["Value"] for t in inst.get("Tags", [])}
        out.setdefault(tags["cloudinitd:service"], []).append(inst["InstanceId"])
    return {k: sorted(v) for k, v in out.items()}


@pytest.mark.slow
@pytest.mark.parametrize(("action", "nth", "then"), EC2_POINTS,
                         ids=[f"{a}{n}-{t}" for a, n, t in EC2_POINTS])
def test_sigkill_ec2_boot(tmp_path, ec2_cloud, ec2cli, action, nth, then):
    cloud = ec2_cloud("k")
    plan = ec2_crash_plan(tmp_path / "p", cloud)
    cloud.client().describe_regions()  # warm moto so the kill lands in the held answer
    cloud.slow(action, delay=2, count=nth)
    run = f"k-{action.lower()}-{nth}-{then}"
    boot = Boot(ec2cli, plan, run)
    boot.kill_when(lambda s: cloud.calls(action) >= nth, f"{action} call {nth}")
    if action == "RunInstances" and nth == 1:
        assert cloud.live_instances(run), "the cloud made instances the store never heard of"
    try:
        if then == "repair":
            res = ec2cli("repair", run, "--json", expect=None)
            assert res.code == 0, res.out + res.err
            live = _live_by_service(cloud, run)
            assert {k: len(v) for k, v in live.items()} == {"web": 7, "db": 3}, live
            status = ec2cli("status", run, "--json").json()
            for service, count in (("web", 7), ("db", 3)):
                rows = status["services"][service]["instances"]
                assert sorted(r["index"] for r in rows) == list(range(count))
                assert sorted(r["instance_id"] for r in rows) == live[service]
                assert {r["state"] for r in rows} == {"running"}
    finally:
        res = ec2cli("terminate", run, "--json", expect=None)
    assert res.code == 0, res.err
    assert cloud.live_instances(run) == []


@pytest.mark.slow
def test_ctrl_c_waits_for_launches_and_says_both_ways_on(tmp_path, ec2_cloud, ec2cli):
    cloud = ec2_cloud("k")
    plan = ec2_crash_plan(tmp_path / "p", cloud)
    cloud.client().describe_regions()
    cloud.slow("RunInstances", delay=3, count=2)
    run = "ctrl-c"
    boot = Boot(ec2cli, plan, run)
    boot.kill_when(lambda s: cloud.calls("RunInstances") >= 1, "RunInstances",
                   sig=signal.SIGINT)
    code, err = boot.finish(timeout=60)
    assert code == 130, err
    live = cloud.live_instances(run)
    status = ec2cli("status", run, "--json", expect=None).json()
    recorded = [i for s in status["services"].values() for i in s["instances"]]
    # It waited: everything the cloud made during the held answer is recorded and counted.
    assert live and len(recorded) == len(live), (len(recorded), len(live))
    assert f"{len(live)} instance(s) live" in err, err
    assert f"cloudinitd repair {run}" in err and f"cloudinitd terminate {run}" in err, err
    assert "Traceback" not in err
    ec2cli("repair", run, "--json")
    assert {k: len(v) for k, v in _live_by_service(cloud, run).items()} == {"web": 7, "db": 3}
    ec2cli("terminate", run, "--json")
    assert cloud.live_instances(run) == []


def test_repair_adopts_a_stray_for_an_empty_slot_and_removes_surplus(tmp_path, ec2_cloud,
                                                                     ec2cli):
    """Instances the store never heard of (a cloud without ClientToken support, a lost
    store row): repair adopts one that fills a wanted, empty slot and removes the rest."""
    cloud = ec2_cloud("k")
    plan = ec2_crash_plan(tmp_path / "p", cloud)
    ec2cli("boot", plan, "--name", "st", "--json")
    ec2 = cloud.client()
    web = {r["index"]: r["instance_id"]
           for r in ec2cli("status", "st", "--json").json()["services"]["web"]["instances"]}
    ec2.terminate_instances(InstanceIds=[web[3]])  # web-3 died

    def stray(index: int) -> str:
        tags = [{"Key": "cloudinitd:run", "Value": "st"},
                {"Key": "cloudinitd:service", "Value": "web"},
                {"Key": "cloudinitd:index", "Value": str(index)}]
        made = ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1,
                                 TagSpecifications=[{"ResourceType": "instance", "Tags": tags}])
        return made["Instances"][0]["InstanceId"]

    fills, extra, clash = stray(3), stray(9), stray(0)
    launched = cloud.calls("RunInstances")
    ec2cli("repair", "st", "--json")
    assert cloud.calls("RunInstances") == launched, "repair launched instead of adopting"
    live = _live_by_service(cloud, "st")
    assert {k: len(v) for k, v in live.items()} == {"web": 7, "db": 3}, live
    assert fills in live["web"] and extra not in live["web"] and clash not in live["web"]
    rows = ec2cli("status", "st", "--json").json()["services"]["web"]["instances"]
    assert {r["index"]: r["instance_id"] for r in rows}[3] == fills
    ec2cli("terminate", "st", "--json")
    assert cloud.live_instances("st") == []
