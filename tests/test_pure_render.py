"""Deciding, rendering and hashing never start a process (issue 10: pure rendering).

The home share is the one effect behind a template's inputs: the converge
starts it before configuring a service that uses `home`; everything else
(deciding whether to re-configure, `check`'s ready scripts, terminate
scripts, dry runs) reads it as data: as started by this process, else as
last recorded in the run's folder.
"""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

import pytest

from cloudinitd import homeshare
from cloudinitd.engine.configure import rendered_inputs
from cloudinitd.engine.context import RunContext
from cloudinitd.engine.converge import Converger
from cloudinitd.plan.loader import load_plan
from cloudinitd.store import Store
from tests.support.cli import write_plan


@pytest.fixture
def address() -> str:
    return f"127.0.{secrets.randbelow(200) + 20}.{secrets.randbelow(250) + 2}"


@pytest.fixture
def run(tmp_path: Path, address: str):
    """A recorded run of a plan whose boot script reads `home`, one instance recorded."""
    share_dir = tmp_path / "shared"
    share_dir.mkdir()
    plan_path = write_plan(tmp_path / "plan", f"""
        name: uses-home
        vars:
          home_listen: {address}
          home_dir: {share_dir}
          home_user: root
        services:
          vm:
            host: 127.0.0.1
            boot: boot.sh.j2
        """, {"boot.sh.j2": "sshfs -p {{ home.port }} {{ home.user }}@{{ home.host }}:"
                            "{{ home.dir }} /mnt\n"})
    home = tmp_path / "home"
    store = Store(home)
    plan = load_plan(plan_path)
    store.create_run("r", plan.name, plan_path, {}, {})
    store.record_instance("r", "vm", 0, "static", "static",
                          _info("127.0.0.1"), client_token=None)
    yield home, store, plan
    homeshare.stop_home_share(store.run_dir("r"))
    store.close()


def _info(address: str):
    from cloudinitd.providers.base import RUNNING, InstanceInfo

    return InstanceInfo("127.0.0.1", RUNNING, address)


@pytest.fixture
def no_process(monkeypatch):
    """Any process started from here on fails the test."""
    started: list = []

    def refuse(*args, **kwargs):
        started.append(args)
        raise AssertionError(f"a process was started: {args[:1]}")

    monkeypatch.setattr(subprocess, "Popen", refuse)
    monkeypatch.setattr(homeshare, "_start_sshd", refuse)
    return started


def test_deciding_and_rendering_start_no_share_and_raise_nothing(run, no_process):
    home, store, plan = run
    ctx = RunContext(home=home, store=store, plan=plan, run="r")
    row = store.instances("r")[0]
    store.update_instance("r", "static", row.instance_id, "vm", configured=1,
                          boot_hash="recorded")
    row = store.instances("r")[0]
    script, _env, digest = rendered_inputs(ctx, plan.services["vm"], 0, ctx.world())
    assert "sshfs -p 22" in script  # the never-started share: stand-ins, nothing contacted
    assert Converger(ctx)._needs_configure("vm", row, ctx.world(), was_ready=True) is True
    assert no_process == []
    assert homeshare.share_pid(store.run_dir("r")) is None


def test_a_recorded_share_renders_as_it_was_started_without_starting_it(run, address):
    home, store, plan = run
    booted = RunContext(home=home, store=store, plan=plan, run="r")
    started = booted.start_home_share(plan.services["vm"])  # the converge's one effect
    pid = homeshare.share_pid(store.run_dir("r"))
    assert pid and started["host"] == address
    _, _, digest = rendered_inputs(booted, plan.services["vm"], 0, booted.world())

    # Another process (repair, status --check, terminate) opens the run later:
    homeshare.stop_home_share(store.run_dir("r"))
    later = RunContext(home=home, store=store, plan=plan, run="r")
    script, _, again = rendered_inputs(later, plan.services["vm"], 0, later.world())
    assert again == digest  # same inputs: no needless re-configure
    assert f"sshfs -p {started['port']} root@{address}:" in script
    assert homeshare.share_pid(store.run_dir("r")) is None  # and nothing was started
