"""Plans from someone else, varied at random (hypothesis).

Whatever a plan holds, the loader answers with a plan or with plan errors
(exit 2), each one line naming a file (and a line where there is one):
never another exception, a hang or an endless read. Seeds are the shipped
plans, the converge cases' plans and the original-format chain plan; the
variations change, delete, add and rename values anywhere in them, with
values chosen to hurt (hostile file names, template tricks, huge and
negative numbers, wrong types, names of other keys).

Derandomized: every run tries the same cases, so CI is reproducible. To
search longer on your own machine: CLOUDINITD_FUZZ_EXAMPLES=5000.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloudinitd.errors import PlanErrors, UsageError
from cloudinitd.importer import import_plan
from cloudinitd.plan.loader import load_plan
from tests.support.hostile import HOSTILE, hostile_folder, within
from tests.test_converge_cases import CASES, load_case, write_plan  # registers `memory`

ROOT = Path(__file__).resolve().parents[1]
KITCHEN_SINK = ROOT / "tests" / "cases" / "fuzz" / "kitchen-sink.yml"
EXAMPLES = int(os.environ.get("CLOUDINITD_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])
# FILE:LINE: message, or FILE: message (an error about a file as a whole)
ERROR_LINE = re.compile(r"^[^\s:][^:]*(:\d+)?: \S")


def _seeds() -> list[tuple[str, dict[str, Any]]]:
    seeds = [(p.parent.name, yaml.safe_load(p.read_text()))
             for p in sorted((ROOT / "plans").glob("*/plan.yml"))]
    with tempfile.TemporaryDirectory() as d:  # the plans as the converge runner writes them
        for case in sorted(CASES.glob("*.yml")):
            path = write_plan(load_case(case), Path(d))
            seeds.append((case.stem, yaml.safe_load(path.read_text())))
    seeds.append(("kitchen-sink", yaml.safe_load(KITCHEN_SINK.read_text())))
    return seeds


def plan_folder(folder: Path, name: str) -> None:
    """What the seeds' plans name besides scripts, and the hostile file names."""
    hostile_folder(folder)
    if (ROOT / "plans" / name).is_dir():  # a shipped plan: with its own scripts
        shutil.copytree(ROOT / "plans" / name, folder, dirs_exist_ok=True)
    (folder / "bundle").mkdir()
    (folder / "bundle" / "f").write_text("x\n")
    (folder / "id_ed25519").write_text("")
    (folder / "hosts.ini").write_text("[compute]\n127.0.0.4\n127.0.0.5 ansible_port=2200\n")


SEEDS = _seeds()


def _keys(node: Any, out: set[str]) -> set[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            out.add(str(k))
            _keys(v, out)
    elif isinstance(node, list):
        for v in node:
            _keys(v, out)
    return out


KEYS = sorted(set().union(*(_keys(tree, set()) for _, tree in SEEDS)))
ATOMS = [
    None, True, False, 0, -1, 1, 2**70, -(2**70), 1e308, float("inf"), float("nan"),
    "", " ", "x" * 5000, "{{ x }}", "{{ 1/0 }}", "{{ ''.__class__.__mro__ }}",
    "{% for i in range(10**9) %}x{% endfor %}", "{{ services }}", "{{ vars.x }}",
    "{{ home }}", "{{", "{%", "}}", "../../etc/passwd", "/etc/passwd", "a\nb",
    "$(id)", "`id`", "a;b", "-oProxyCommand=id", "~", "10s", "-5s", "1e400", "0o777",
    "999999999999999999999", "127.0.0.1", "::1", "ec2", "local", "qemu", "hosts",
    [], {}, [1, 2], ["a", "b"], {"a": 1}, {"file": "fifo"}, [{"a": 1}], "boot.sh",
    "\u2028", *HOSTILE.values(),
]
VALUES = st.one_of(st.sampled_from(ATOMS), st.sampled_from(KEYS),
                   st.text(max_size=12), st.integers(-(2**40), 2**40))
# Same-type values get past the schema to the code behind it.
SAME_TYPE = {str: st.one_of(st.sampled_from([a for a in ATOMS if isinstance(a, str)]),
                            st.text(max_size=12), st.sampled_from(KEYS)),
             int: st.one_of(st.sampled_from([0, -1, 1, 2**31, 2**70, -(2**70)]),
                            st.integers(-(2**40), 2**40))}
FILE_KEYS = {"boot", "ready", "terminate", "sensor", "script", "files", "file", "ssh_key"}
OPS = st.sampled_from(["same", "same", "same", "set", "set", "delete", "add", "rename"])


def _paths(node: Any, at: tuple = ()) -> list[tuple]:
    out = [at]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*at, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*at, i))
    return out


def _get(node: Any, path: tuple) -> Any:
    for k in path:
        node = node[k]
    return node


def vary(tree: dict[str, Any], data: st.DataObject) -> dict[str, Any]:
    """1-4 edits, each at a place drawn from the tree as it is by then (mostly
    inside services and clouds, where most of the loader's code is)."""
    tree = copy.deepcopy(tree)
    for _ in range(data.draw(st.integers(1, 4), label="edits")):
        paths = [p for p in _paths(tree) if p]
        deep = [p for p in paths if len(p) >= 3]
        if not paths:
            break
        pool = deep if deep and data.draw(st.integers(0, 3), label="deep") else paths
        path = data.draw(st.sampled_from(pool), label="at")
        op, value = data.draw(OPS, label="op"), data.draw(VALUES, label="value")
        parent, last = _get(tree, path[:-1]), path[-1]
        kind = type(parent[last]) if not isinstance(parent[last], bool) else bool
        names_a_file = any(k in FILE_KEYS for k in path if isinstance(k, str))
        if op == "same" and kind is str and names_a_file and data.draw(st.booleans()):
            parent[last] = data.draw(st.sampled_from(sorted(HOSTILE.values())), label="file")
        elif op == "same" and kind in SAME_TYPE:
            parent[last] = data.draw(SAME_TYPE[kind], label="same")
        elif op in ("set", "same"):
            parent[last] = copy.deepcopy(value)
        elif op == "delete":
            del parent[last]
        elif isinstance(parent, dict) and op == "add":
            parent[data.draw(st.sampled_from(KEYS), label="key")] = copy.deepcopy(value)
        elif isinstance(parent, dict) and op == "rename":
            parent[data.draw(st.sampled_from(KEYS), label="key")] = parent.pop(last)
    return tree


def _scripts_for(tree: Any, folder: Path) -> None:
    """Every short plain name in the plan that looks like a script exists, as a template."""
    for path in _paths(tree):
        v = _get(tree, path)
        if (isinstance(v, str) and 0 < len(v) < 100 and "/" not in v and "\0" not in v
                and v.endswith((".sh", ".j2", ".py", ".txt"))):
            (folder / v).write_text("#!/bin/sh\necho {{ 1 }}\n")


def assert_plan_errors(text: str) -> None:
    for line in text.splitlines():
        assert ERROR_LINE.match(line), f"an error line without its file: {line[:300]!r}"
        assert len(line) <= 1200, line[:300]


def test_the_kitchen_sink_seed_loads_as_it_is(tmp_path):
    """Else edits of it would only ever reach the error that broke it."""
    plan_folder(tmp_path, "kitchen-sink")
    tree = yaml.safe_load(KITCHEN_SINK.read_text())
    _scripts_for(tree, tmp_path)
    shutil.copy(KITCHEN_SINK, tmp_path / "plan.yml")
    loaded = load_plan(tmp_path / "plan.yml")
    assert len(loaded.services) == 6


@FUZZ
@given(seed=st.one_of(st.just(SEEDS[-1]), st.sampled_from(SEEDS)),  # the kitchen sink: often
       data=st.data())
def test_a_varied_plan_loads_or_says_what_is_wrong(seed, data):
    name, tree = seed
    tree = vary(tree, data)
    with tempfile.TemporaryDirectory(prefix="cid-fuzz-") as d:
        plan_folder(Path(d), name)
        _scripts_for(tree, Path(d))
        plan = Path(d) / "plan.yml"
        plan.write_text(yaml.safe_dump(tree, allow_unicode=True, sort_keys=False))
        try:
            within(20, load_plan, plan)
        except PlanErrors as exc:
            assert exc.exit_code == 2
            assert_plan_errors(str(exc))


CHAIN = ROOT / "tests" / "plans" / "original" / "chain"
CONFS = sorted(p.name for p in CHAIN.glob("*.conf"))
ORIG_KEYS = ["hostname", "bootpgm", "bootpgm_args", "readypgm", "terminatepgm", "deps",
             "bootconf", "local_exe", "ssh_username", "localsshkeypath", "pgm_timeout",
             "image", "iaas", "iaas_key", "replica_count", "level1", "level9", "who"]
ORIG_VALUES = st.one_of(
    st.sampled_from(["", "${", "${.x}", "${db.hostname}", "${global.who}", "%(who)s", "%(",
                     "%%", "env.", "env.NOPE", "True", "0", "-1", "99999999999999999999",
                     "top.conf", "level1.conf", "bundle.tar.gz", "db-boot.sh", "$(id)", "[",
                     "{{ x }}", "x" * 3000, *HOSTILE.values()]),
    st.text(max_size=12).filter(lambda s: "\n" not in s and "\r" not in s))
LINE_EDITS = st.lists(st.tuples(
    st.sampled_from(CONFS), st.floats(0, 1, exclude_max=True),
    st.sampled_from(["value", "insert", "section", "delete", "repeat"]),
    st.sampled_from(ORIG_KEYS), ORIG_VALUES), min_size=1, max_size=5)


def vary_lines(lines: list[str], where: float, op: str, key: str, value: str) -> None:
    i = int(where * (len(lines) + 1))
    if op == "value" and i < len(lines):
        head = lines[i].split(":", 1)[0] if ":" in lines[i] else key
        lines[i] = f"{head}: {value}"
    elif op == "insert":
        lines.insert(i, f"{key}: {value}")
    elif op == "section":
        lines.insert(i, f"[svc-{value[:20]}]" if value else "[defaults]")
    elif op == "delete" and i < len(lines):
        del lines[i]
    elif op == "repeat" and lines:
        lines.insert(i, lines[min(i, len(lines) - 1)])


@FUZZ
@given(edits=LINE_EDITS)
def test_a_varied_original_plan_converts_or_says_what_is_wrong(edits):
    env = {"ORIG_OUT": "/srv/out", "ORIG_DB_HOST": "127.0.0.9:2222",
           "ORIG_WEB_HOST": "127.0.0.10", "ORIG_SSH_USER": "deploy"}
    with tempfile.TemporaryDirectory(prefix="cid-fuzz-") as d:
        folder = Path(d) / "chain"
        shutil.copytree(CHAIN, folder)
        hostile_folder(folder)
        with tarfile.open(folder / "bundle.tar.gz", "w:gz") as tar:
            tar.add(folder / "bundle", arcname="bundle")
        texts = {name: (folder / name).read_text().splitlines() for name in CONFS}
        for conf, where, op, key, value in edits:
            vary_lines(texts[conf], where, op, key, value)
        for name, lines in texts.items():
            (folder / name).write_text("\n".join(lines) + "\n")
        try:
            path, _ = within(20, import_plan, folder / "top.conf", Path(d) / "out", env)
            within(20, load_plan, path)
        except UsageError as exc:  # PlanError or PlanErrors
            assert exc.exit_code == 2
            assert_plan_errors(str(exc))
