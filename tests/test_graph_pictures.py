"""`graph PLAN` and `graph RUN` pictures: counts, clouds, levels, edge reasons; a run's
states and addresses (a real run on OpenSSH servers); svg/png through graphviz."""

from __future__ import annotations

import shutil
import struct

import pytest

from cloudinitd.graph import boot_levels, build_graph
from cloudinitd.plan.loader import load_plan
from cloudinitd.plan.picture import FONT, plan_dot
from tests.support.cli import Cli, write_plan

PLAN = """
    name: pic
    clouds:
      aws: {provider: ec2, region: us-east-1}
    services:
      store:
        cloud: local
        boot: store.sh
        exports: [greeting]
      web:
        clouds: [{cloud: aws, max: 2}, {cloud: local}]
        count: 3
        boot: web.sh.j2
      probe:
        cloud: local
        after: [web]
    """


def test_plan_picture_shows_counts_clouds_levels_and_edge_reasons(tmp_path):
    plan = load_plan(write_plan(tmp_path, PLAN, {"store.sh": "true\n",
                                                 "web.sh.j2": "echo {{ store.greeting }}\n"}))
    graph = build_graph(plan)
    dot = plan_dot(plan, graph, boot_levels(graph))
    assert '"web" [label="web\\n3 x aws (max 2), then local"]' in dot
    assert '"store" [label="store\\n1 x local\\nexports greeting"]' in dot
    assert 'label="level 2"' in dot and "subgraph cluster_level0" in dot
    assert '"store" -> "web" [label="store.greeting"];' in dot
    assert '"web" -> "probe" [label="after"];' in dot
    assert f'fontname="{FONT}"' in dot
    assert 'label="plan pic: 3 services, 5 instances, 3 boot levels"' in dot


def test_graph_of_a_run_shows_states_and_addresses(tmp_path, cli: Cli, sshd_hosts):
    db, web = sshd_hosts(2)
    plan = write_plan(tmp_path / "p", f"""
        name: live
        services:
          db:
            host: {db.address}
            ssh_port: {db.port}
            ssh_key: {db.key_path}
          web:
            host: {web.address}
            ssh_port: {web.port}
            ssh_key: {web.key_path}
            after: [db]
        """)
    cli("boot", plan, "--name", "live", "-q")
    dot = cli("graph", "live", "--format", "dot").out
    assert f'"db: ready\\non host {db.address}\\n/0 running {db.address}"' in dot
    assert f"/0 running {web.address}" in dot and '"db" -> "web" [label="after"];' in dot
    assert 'label="run live (plan live): ready, 2 instances, 2 boot levels"' in dot
    text = cli("graph", "live").out
    assert f"  web: ready (/0 running {web.address})" in text
    data = cli("graph", "live", "--json").json()
    assert data["services"]["db"]["instances"] == [
        {"index": 0, "state": "running", "address": db.address}]
    if not shutil.which("dot"):
        pytest.fail("graphviz `dot` missing: scripts/install-system-deps.sh installs it")
    svg = tmp_path / "run.svg"
    cli("graph", "live", "--format", "svg", "-o", svg)
    assert FONT in svg.read_text() and db.address in svg.read_text()
    png = tmp_path / "run.png"
    cli("graph", "live", "--format", "png", "-o", png)
    width, height = struct.unpack(">II", png.read_bytes()[16:24])
    assert width > 600 and height > 150  # not the 330x59 thumbnail of plain ovals
    # An unknown name is neither a run nor a plan: one line, exit 2.
    assert "no plan 'nope'" in cli("graph", "nope", expect=2).err
