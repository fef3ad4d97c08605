"""The converge walk in this process, on real sshd hosts behind the EC2 test cloud.

A service's instances are configured in parallel; the service is ready only
when every one of them is, and failed as soon as one fails. These tests run
the engine in-process (not through the CLI) so `make mutate` can link them
to engine/converge.py.

The instances of `nodes` are two loopback sshd servers on one port (the test
cloud hands out their addresses). Instance 0 finishes at once. Instance 1 is
the slow one: it waits (bounded) for any sign that a dependent has started,
so an engine that treats the first finished instance as "the service is
ready" is caught every time, not only when the timing happens to be bad.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from cloudinitd.engine.boot import boot, start_run
from cloudinitd.engine.terminate import terminate_run
from cloudinitd.plan.loader import load_plan
from cloudinitd.schedule import FAILED, READY, SKIPPED
from cloudinitd.store import Store
from tests.support.cli import write_plan
from tests.support.testcloud import ACCESS_KEY, SECRET_KEY

AK, SK = "CONVERGE_EC2_ACCESS_KEY", "CONVERGE_EC2_SECRET_KEY"

SLOW_WAIT_S = 3  # how long the slow instance gives a wrongly started dependent to show up


def _plan(tmp_path: Path, cloud, nodes, app, web, out: Path, slow_exit: int,
          fast_exit: int = 0) -> Path:
    text = f"""
        name: multi
        vars:
          out: {out}
          slow_exit: {slow_exit}
          fast_exit: {fast_exit}
        clouds:
          a:
            provider: ec2
            endpoint: "{cloud.endpoint}"
            region: us-east-1
            credentials: {{access_key_env: {AK}, secret_key_env: {SK}}}
        defaults:
          image: ami-12345678
          ssh_key: {nodes[0].key_path}
        services:
          nodes:
            cloud: a
            count: 2
            ssh_port: {nodes[0].port}
            boot: nodes.sh.j2
          app:
            host: {app.address}
            ssh_port: {app.port}
            after: [nodes]
            boot: app.sh.j2
          web:
            host: {web.address}
            ssh_port: {web.port}
            after: [app]
            boot: web.sh.j2
    """
    scripts = {
        "nodes.sh.j2": """
            if [ {{ self.index }} = 0 ]; then
              touch {{ vars.out }}/fast-done
              echo "fast instance ends with {{ vars.fast_exit }}" >&2
              exit {{ vars.fast_exit }}
            fi
            i=0
            while [ $i -lt $((SLOW_WAIT * 10)) ] && [ ! -e {{ vars.out }}/app-started ]; do
              sleep 0.1; i=$((i + 1))
            done
            touch {{ vars.out }}/slow-done
            echo "slow instance ends with {{ vars.slow_exit }}" >&2
            exit {{ vars.slow_exit }}
            """.replace("SLOW_WAIT", str(SLOW_WAIT_S)),
        "app.sh.j2": """
            touch {{ vars.out }}/app-started
            ls {{ vars.out }} > {{ vars.out }}/app-saw
            """,
        "web.sh.j2": "touch {{ vars.out }}/web-started\n",
    }
    return write_plan(tmp_path / "plan", text, scripts)


@pytest.fixture
def engine_env(tmp_path, monkeypatch):
    monkeypatch.setenv(AK, ACCESS_KEY)
    monkeypatch.setenv(SK, SECRET_KEY)
    home = tmp_path / "home"
    monkeypatch.setenv("CLOUDINITD_HOME", str(home))
    return home


def _boot(home: Path, plan_path: Path, name: str):
    store = Store(home)
    ctx = start_run(home, store, load_plan(plan_path), {}, name)
    states: list[tuple[str, str]] = []
    lock = threading.Lock()

    def progress(service, index, state, detail=""):
        with lock:
            states.append((service, state))

    ctx.progress = progress
    return ctx, boot(ctx), states


@pytest.mark.parametrize(("fast_exit", "slow_exit"), [(0, 1), (0, 0), (2, 0)],
                         ids=["slow-instance-fails", "both-ok", "fast-instance-fails"])
def test_a_service_waits_for_every_instance(tmp_path, engine_env, ec2_cloud, sshd_hosts,
                                            fast_exit, slow_exit):
    nodes = sshd_hosts(2, same_port=True)
    app, web = sshd_hosts(2)
    cloud = ec2_cloud("a")
    cloud.set_pool([h.address for h in nodes])
    out = tmp_path / "out"
    out.mkdir()
    plan = _plan(tmp_path, cloud, nodes, app, web, out, slow_exit, fast_exit)

    ctx, result, states = _boot(engine_env, plan, f"multi-{fast_exit}-{slow_exit}")
    try:
        assert (out / "fast-done").exists() and (out / "slow-done").exists()
        svc = result.services
        assert {n: s.name for n, s in svc.items()} == {n: n for n in ("nodes", "app", "web")}
        if fast_exit or slow_exit:
            # One failed instance fails the service, whatever its sibling did (the
            # sibling still finishes, and a late success does not make it ready) ...
            assert svc["nodes"].state == FAILED and svc["nodes"].step == "boot"
            which = "fast" if fast_exit else "slow"
            assert svc["nodes"].error == f"nodes: boot failed: exit status {fast_exit or slow_exit}"
            assert Path(svc["nodes"].log_path).is_file()
            assert f"{which} instance ends with {fast_exit or slow_exit}" in svc["nodes"].log_tail
            # ... and nothing below it runs: children and grandchildren are skipped
            # because of it (not left over as "never became configurable").
            assert not (out / "app-started").exists()
            assert not (out / "web-started").exists()
            assert (svc["app"].state, svc["app"].error) == (SKIPPED, "app: not run: nodes failed")
            assert (svc["web"].state, svc["web"].error) == (SKIPPED, "web: not run: nodes failed")
            assert result.ok is False
            recorded = ctx.store.services(ctx.run)
            assert {n: r.status for n, r in recorded.items()} == {
                "nodes": FAILED, "app": SKIPPED, "web": SKIPPED}
            assert ctx.store.run(ctx.run).status == "failed"
            assert ("nodes", READY) not in states
        else:
            assert result.ok is True
            assert {n: s.state for n, s in svc.items()} == {n: READY for n in svc}
            # The dependent started only after both instances had finished.
            assert "slow-done" in (out / "app-saw").read_text().split()
            assert (out / "web-started").exists()
            assert ctx.store.run(ctx.run).status == "ready"
            assert states.index(("nodes", READY)) < states.index(("app", "configuring"))
    finally:
        done = terminate_run(ctx)
        assert done.ok
        assert cloud.live_instances(ctx.run) == []


@pytest.mark.parametrize(("code", "status", "message"), [
    ("UnauthorizedOperation", 403, "nodes: launch failed: "),
    ("InsufficientInstanceCapacity", 500, "nodes: capacity: no room for 2 more instance(s)"),
], ids=["refused", "no-capacity"])
def test_a_launch_failure_fails_the_service_and_skips_the_rest(tmp_path, engine_env, ec2_cloud,
                                                               sshd_hosts, code, status, message):
    nodes = sshd_hosts(2, same_port=True)
    app, web = sshd_hosts(2)
    cloud = ec2_cloud("a")
    cloud.arm(code, count=10, status=status, action="RunInstances")
    out = tmp_path / "out"
    out.mkdir()
    plan = _plan(tmp_path, cloud, nodes, app, web, out, 0)
    ctx, result, _ = _boot(engine_env, plan, "launch-fails")
    try:
        svc = result.services
        assert (svc["nodes"].name, svc["nodes"].state, svc["nodes"].step) == (
            "nodes", FAILED, "launch")
        assert svc["nodes"].error.startswith(message)
        assert (svc["app"].state, svc["web"].state) == (SKIPPED, SKIPPED)
        assert list(out.iterdir()) == []
    finally:
        terminate_run(ctx)

