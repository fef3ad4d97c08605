"""Start-up before the first connection (issue 11): a YAML plan is loaded without the
original-plan importer, each distinct template text is parsed once however often the
plan is scanned, and a file's display name is worked out once per current folder;
each shortcut gives the answers the long way gave."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cloudinitd.errors import PlanErrors
from cloudinitd.graph import build_graph, context_uses, service_references
from cloudinitd.paths import display_path
from cloudinitd.plan.loader import load_plan
from cloudinitd.refscan import _parse_cached
from tests.test_importer import chain_copy

PROBE = """\
import json, sys
from cloudinitd import api
path = api.plan_file(sys.argv[1], home=sys.argv[2])
print(json.dumps({"path": str(path), "importer": "cloudinitd.importer" in sys.modules}))
"""


def _plan_file(arg: Path, home: Path) -> dict:
    """api.plan_file in a fresh interpreter: which plan it found, and whether the importer
    package was imported to find it."""
    out = subprocess.run([sys.executable, "-c", PROBE, str(arg), str(home)],
                         capture_output=True, text=True, check=True,
                         env={**os.environ, "ORIG_OUT": "/srv/out",
                              "ORIG_DB_HOST": "127.0.0.9", "ORIG_WEB_HOST": "127.0.0.10",
                              "ORIG_SSH_USER": "deploy"})
    return json.loads(out.stdout.splitlines()[-1])


def test_a_yaml_plan_is_found_without_importing_the_importer(tmp_path):
    plan = tmp_path / "plan.yml"
    plan.write_text("services:\n  a: {}\n")
    assert _plan_file(plan, tmp_path / "home") == {"path": str(plan), "importer": False}
    # A YAML plan named *.conf is still a plan file, not an original: no importer either.
    conf = tmp_path / "plan.conf"
    conf.write_text("services:\n  a: {}\n")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "plan.yml").write_text("services:\n  a: {}\n")
    assert _plan_file(tmp_path / "folder", tmp_path / "home") == {
        "path": str(tmp_path / "folder" / "plan.yml"), "importer": False}


def test_a_top_conf_is_still_recognised_and_converted(tmp_path):
    top = chain_copy(tmp_path)
    found = _plan_file(top, tmp_path / "home")
    assert found["importer"] is True
    path = Path(found["path"])
    assert path.name == "plan.yml" and path.is_relative_to(tmp_path / "home" / "imported")
    assert "services:" in path.read_text()


def _write(folder: Path, text: str, script: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "step.sh.j2").write_text(script)
    (folder / "plan.yml").write_text(text)
    return folder / "plan.yml"


def test_one_text_in_two_plans_is_judged_by_each_plan(tmp_path):
    # The same script text (parsed once) is fine where db has one instance and an error
    # where it has two: what a parse says is shared, what the plan makes of it is not.
    script = "echo {{ db.address }}\n"
    one = _write(tmp_path / "one", "services:\n  db: {}\n  a: {boot: step.sh.j2}\n", script)
    two = _write(tmp_path / "two", "services:\n  db: {count: 2, image: x, cloud: local}\n"
                 "  a: {boot: step.sh.j2}\n", script)
    plan = load_plan(one)
    assert service_references(plan)["a"] == {("db", "address")}
    with pytest.raises(PlanErrors) as info:
        load_plan(two)
    assert any("service 'db' has 2 instances" in e.message and e.file.endswith("step.sh.j2")
               and e.line == 1 for e in info.value.errors), info.value.errors


def test_a_syntax_error_is_reported_in_each_file_that_has_it(tmp_path):
    script = "line one\n{{ broken\n"
    errors = []
    for name in ("x", "y"):
        with pytest.raises(PlanErrors) as info:
            load_plan(_write(tmp_path / name, "services:\n  a: {boot: step.sh.j2}\n", script))
        errors.append([(Path(e.file).parent.name, e.line, e.message.split(":")[0])
                       for e in info.value.errors])
    assert errors == [[("x", 2, "template syntax error")], [("y", 2, "template syntax error")]]


def test_the_converge_scan_parses_nothing_the_load_did_not(tmp_path):
    plan = load_plan(_write(tmp_path / "p", "services:\n  db: {}\n  a: {boot: step.sh.j2,"
                            " env: {X: '{{ db.address }}'}}\n",
                            "{% if home is defined %}{{ home.dir }}{% endif %}{{ env.X }}\n"))
    misses = _parse_cached.cache_info().misses
    assert sorted(build_graph(plan).edges) == [("db", "a")]
    assert context_uses(plan)["a"] == {"home", "env"}
    assert _parse_cached.cache_info().misses == misses


def test_display_path_follows_the_current_folder(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    target = tmp_path / "sub" / "x.sh"
    target.write_text("")
    monkeypatch.chdir(tmp_path)
    assert display_path("sub/x.sh") == "sub/x.sh" == display_path(target)
    monkeypatch.chdir(tmp_path / "sub")
    assert display_path(target) == "x.sh"
    assert display_path("x.sh") == "x.sh"
    (tmp_path / "other").mkdir()
    monkeypatch.chdir(tmp_path / "other")
    assert display_path(target) == str(target.resolve())
    assert display_path("../sub/x.sh") == str(target.resolve())


def test_a_long_template_is_scanned_each_time_and_not_kept(tmp_path):
    # Above 64 KiB a text is parsed every time (a long-lived `serve` must not keep large
    # trees of untrusted plans), and it is judged the same way.
    filler = "# " + "x" * 78 + "\n"
    script = filler * 900 + "echo {{ db.address }} {{ nosuch.x }}\n"  # ~72 KiB
    assert len(script) > 64 * 1024
    path = _write(tmp_path / "p", "services:\n  db: {}\n  a: {boot: step.sh.j2}\n", script)
    kept = _parse_cached.cache_info().currsize
    with pytest.raises(PlanErrors) as info:
        load_plan(path)
    assert [(e.line, e.message) for e in info.value.errors] == [
        (901, "unknown service or variable 'nosuch'")], info.value.errors
    assert _parse_cached.cache_info().currsize == kept  # nothing of it was kept
    # Exactly at the limit it is still kept.
    edge = "echo {{ db.address }}\n"
    edge = "#" * (64 * 1024 - len(edge) - 1) + "\n" + edge
    assert len(edge) == 64 * 1024
    load_plan(_write(tmp_path / "edge", "services:\n  db: {}\n  a: {boot: step.sh.j2}\n", edge))
    assert _parse_cached.cache_info().currsize == kept + 1
