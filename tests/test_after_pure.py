"""In-process tests of the pure pieces behind diff, outputs, --show-values and graph
pictures (what `make mutate` runs against plan/samples.py, plan/picture.py,
plan/outputs.py and engine/inputs.py)."""

from __future__ import annotations

from cloudinitd.engine.inputs import changed_parts, input_parts, vars_used
from cloudinitd.graph import boot_levels, build_graph
from cloudinitd.plan.loader import load_plan
from cloudinitd.plan.outputs import render_outputs
from cloudinitd.plan.picture import MAX_INSTANCE_LINES, placement, run_dot
from cloudinitd.plan.samples import sample_world, shown_values
from tests.support.cli import write_plan

PLAN = """
    name: pure
    vars: {port: 80, unused: 1}
    services:
      db:
        cloud: local
        boot: db.sh.j2
        exports: [password, port, url, data_dir, host, note]
      web:
        cloud: local
        count: 2
        boot: web.sh.j2
        env: {DB: "{{ db.address }}"}
      side:
        host: db
    outputs:
      url: "http://{{ db.address }}:{{ vars.port }}/"
      both: "{{ web.instances | map(attribute='address') | join(',') }}"
      bad: "{{ db.password }}"
    """


def _plan(tmp_path):
    return load_plan(write_plan(tmp_path, PLAN, {
        "db.sh.j2": "echo {{ vars.port }}\n",
        "web.sh.j2": "echo {{ db.url }} {{ self.count }} {{ vars['port'] }}\n"}))


def test_sample_values_are_shaped_by_their_names(tmp_path):
    plan = _plan(tmp_path)
    world = sample_world(plan)
    db = world["db"][0]
    assert db["port"] == "8080" and db["url"] == f"http://{db['address']}:8080/"
    assert db["password"] == "s3cr3t'db0" and db["data_dir"] == "/srv/db/data_dir"
    assert db["host"] == db["address"] and db["note"] == "note of db-0"
    assert shown_values(world, plan)["db/0.port"] == "8080"
    assert [i["index"] for i in world["web"]] == [0, 1]


def test_outputs_render_with_a_world_and_report_each_failure_alone(tmp_path):
    plan = _plan(tmp_path)
    world = {"db": [{"index": 0, "address": "10.0.0.1"}],
             "web": [{"index": 0, "address": "10.0.0.2"}, {"index": 1, "address": "10.0.0.3"}],
             "side": []}
    values, errors = render_outputs(plan, "r1", world)
    assert values == {"url": "http://10.0.0.1:80/", "both": "10.0.0.2,10.0.0.3"}
    assert list(errors) == ["bad"] and "password" in errors["bad"]
    assert errors["bad"].startswith(f"{plan.outputs_pos['bad']}: ")


def test_run_picture_colours_states_and_cuts_long_instance_lists(tmp_path):
    plan = _plan(tmp_path)
    graph = build_graph(plan)
    many = [{"index": i, "state": "running", "address": f"10.0.0.{i}"} for i in range(9)]
    status = {"run": "r1", "status": "failed", "services": {
        "db": {"status": "ready", "instances": many[:1]},
        "web": {"status": "failed", "instances": many}}}
    dot = run_dot(plan, graph, boot_levels(graph), status)
    assert '"db" [label="db: ready\\n1 x local\\n/0 running 10.0.0.0", fillcolor="#dcf2de"]' in dot
    assert f"... {9 - MAX_INSTANCE_LINES} more" in dot and "/6 running" not in dot
    assert '"side" [label="side: not recorded\\non host db", fillcolor="#fff3d1"]' in dot
    assert 'fillcolor="#f8d6d6"' in dot  # web failed
    assert 'label="run r1 (plan pure): failed, 10 instances, 2 boot levels"' in dot
    assert placement(plan.services["web"]) == "2 x local"


def test_input_parts_name_each_input_and_changed_parts_explains(tmp_path):
    plan = _plan(tmp_path)
    web = plan.services["web"]
    reads = {("db", "url"), ("db", "address")}
    world = {"db": [{"index": 0, "address": "a", "url": "u1"}],
             "web": [{"index": 0, "address": "w0"}]}
    assert vars_used(web) == {"port"} and vars_used(plan.services["db"]) == {"port"}
    old = input_parts(web, reads, plan.vars, world, "script", {"DB": "a"}, [], b"k")
    assert set(old) == {"script:boot", "env.DB", "db.address", "db.url", "self.instances",
                        "vars.port", "rendered"}
    moved = {"db": [{"index": 0, "address": "b", "url": "u1"}], "web": world["web"]}
    new = input_parts(web, reads, {**plan.vars, "port": 81}, moved, "script2", {"DB": "b"},
                      [], b"k")
    assert changed_parts(old, new) == ["db.address", "env.DB", "vars.port"]
    assert changed_parts(old, {**old, "rendered": "x"}) == ["rendered"]
    assert changed_parts(None, new) == []
    # Keyed: another run's key gives other digests for the same value.
    assert input_parts(web, reads, plan.vars, world, "script", {"DB": "a"}, [], b"j") != old
