"""Connecting ahead of need (issue 11): which hosts, in which order, and what it may not do.

Early connection runs nothing of the plan's: it opens the SSH connection and
runs the probe (`$HOME`, hostname). It pins a host key exactly as the step's own
first connection would (TOFU), refuses a changed key as the step would, and
never connects for a service that can no longer run (its dependency failed,
or Ctrl-C stopped the converge). Real sshd on 127.0.0.x.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cloudinitd.engine.boot import start_run
from cloudinitd.engine.converge import Converger
from cloudinitd.errors import RemoteError
from cloudinitd.plan.loader import load_plan
from cloudinitd.remote.session import close_all, prewarm, session_for
from cloudinitd.schedule import LAUNCHED, SKIPPED
from cloudinitd.store import Store
from tests.support.cli import write_plan


def _service(name: str, host, key: Path, after: list[str] | None = None) -> str:
    text = (f"  {name}:\n    host: {host.address}\n    ssh_port: {host.port}\n"
            f"    ssh_key: {key}\n    boot: step.sh.j2\n")
    return text + (f"    after: [{', '.join(after)}]\n" if after else "")


def _converger(tmp_path: Path, services: str, name: str = "warm-1") -> Converger:
    plan = write_plan(tmp_path / "plan", f"name: warm\nservices:\n{services}",
                      {"step.sh.j2": "true\n"})
    home = tmp_path / "home"
    ctx = start_run(home, Store(home), load_plan(plan), {}, name)
    return Converger(ctx)


@pytest.fixture(autouse=True)
def _closed():
    yield
    close_all()


def test_hosts_waiting_on_dependencies_are_warmed_nearest_first(tmp_path, sshd_hosts):
    h = sshd_hosts(5)
    key = h[0].key_path
    # root -> a -> b -> c, and root -> d: the plan lists the deep ones first.
    services = (_service("c", h[3], key, ["b"]) + _service("b", h[2], key, ["a"])
                + _service("root", h[0], key) + _service("a", h[1], key, ["root"])
                + _service("d", h[4], key, ["root"]))
    conv = _converger(tmp_path, services)
    order = [name for _, name in conv._prewarm_targets()]
    # The root starts at once (its own step connects); the rest by boot level.
    assert order == ["a", "d", "b", "c"]
    assert [t.address for t, _ in conv._prewarm_targets()] == [
        h[1].address, h[4].address, h[2].address, h[3].address]


def test_a_warm_connection_pins_the_key_a_step_would(tmp_path, sshd_hosts):
    root, dep = sshd_hosts(2)
    conv = _converger(tmp_path, _service("root", root, root.key_path)
                      + _service("dep", dep, root.key_path, ["root"]))
    ((target, name),) = conv._prewarm_targets()
    assert name == "dep" and target.address == dep.address
    conv.states[name] = LAUNCHED  # waiting for its dependency
    assert conv._warm(target, name) is True
    pinned = target.known_hosts.read_text()
    keytype, blob = dep.host_public_key.split()[:2]
    assert f"[{dep.address}]:{dep.port} {keytype} {blob}" in pinned
    assert "Accepted publickey" in dep.log.read_text()  # what the negative test looks for
    # The step adopts the connection: the probe already ran on it.
    sess = session_for(target, name)
    assert sess.probed and sess.home.startswith("/")


def test_no_connection_for_a_service_that_can_no_longer_run(tmp_path, sshd_hosts):
    root, dep = sshd_hosts(2)
    conv = _converger(tmp_path, _service("root", root, root.key_path)
                      + _service("dep", dep, root.key_path, ["root"]))
    ((target, name),) = conv._prewarm_targets()
    conv.states[name] = SKIPPED  # its dependency failed before the warm-up came round
    assert conv._warm(target, name) is False
    conv.states[name] = LAUNCHED
    conv.stop.set()  # Ctrl-C: nothing new starts
    assert conv._warm(target, name) is False
    # Not connected at all: no key was pinned, sshd saw no login.
    assert not target.known_hosts.exists() or dep.address not in target.known_hosts.read_text()
    assert "Accepted publickey" not in dep.log.read_text()


def test_a_changed_host_key_is_refused_ahead_of_need_as_in_the_step(tmp_path, sshd_hosts):
    root, dep = sshd_hosts(2)
    conv = _converger(tmp_path, _service("root", root, root.key_path)
                      + _service("dep", dep, root.key_path, ["root"]))
    ((target, name),) = conv._prewarm_targets()
    conv.states[name] = LAUNCHED
    assert conv._warm(target, name) is True
    pinned = target.known_hosts.read_text()
    close_all()
    dep.restart(new_host_key=True)
    assert prewarm(target, name) is False  # the warm-up neither trusts nor re-pins it
    assert target.known_hosts.read_text() == pinned
    with pytest.raises(RemoteError, match="host key"):
        session_for(target, name)  # the step itself reports it, as before


def test_the_cli_freezes_garbage_collection_as_it_ends_and_keeps_its_exit_code(tmp_path):
    # The process is ending: the interpreter's last collections are skipped (frozen).
    bad = tmp_path / "plan.yml"
    bad.write_text("name: x\nservices:\n  a:\n    host: [\n")
    code = ("import atexit, gc, sys\n"
            "atexit.register(lambda: print('frozen', gc.get_freeze_count() > 0))\n"
            "from cloudinitd.cli.main import main\n"
            f"sys.argv = ['cloudinitd', 'validate', {str(bad)!r}]\n"
            "main()\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env={"PATH": "/usr/bin:/bin",
                                           "PYTHONPATH": ":".join(sys.path),
                                           "CLOUDINITD_HOME": str(tmp_path / "home")})
    assert proc.returncode == 2
    assert proc.stdout.strip() == "frozen True"
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{bad}:" in lines[0] and "Traceback" not in proc.stderr

