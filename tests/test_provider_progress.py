"""What a provider says while it works reaches the engine's progress callback.

A provider used to print to stderr itself (the local provider's first base-image
build, a container restarted during boot), which landed behind the live table.
"""

from __future__ import annotations

import ast
from pathlib import Path

from cloudinitd.engine.boot import start_run
from cloudinitd.plan.loader import load_plan
from cloudinitd.store import Store
from cloudinitd.testing import forget_clouds

PROVIDERS = Path(__file__).resolve().parent.parent / "cloudinitd" / "providers"
# The lease keeper is a process of its own, detached from any command: its lines go to
# its own log file, which is the stderr it was started with.
OWN_PROCESS = {"lease.py"}


def test_a_providers_lines_go_to_the_runs_progress_under_its_cloud(tmp_path: Path) -> None:
    (tmp_path / "ok.sh").write_text("true\n")
    (tmp_path / "plan.yml").write_text(
        "name: say\nclouds: {mem: {provider: memory}}\n"
        "defaults: {cloud: mem, image: img, size: small}\nservices:\n  a: {boot: ok.sh}\n")
    heard: list[tuple[str, int | None, str, str]] = []
    home = tmp_path / "home"
    try:
        ctx = start_run(home, Store(home), load_plan(tmp_path / "plan.yml", catalog={}), {},
                        "r", progress=lambda *line: heard.append(line))
        provider = ctx.provider("mem")
        assert provider is ctx.provider("mem")  # one per cloud: said once, wired once
        provider.say("building base image debian-12 (first time, ~3 min)...")
        assert heard == [("cloud mem", None, "cloud",
                          "building base image debian-12 (first time, ~3 min)...")]
    finally:
        forget_clouds(home)


def test_no_provider_module_prints() -> None:
    printing = []
    for path in sorted(PROVIDERS.rglob("*.py")):
        if path.name in OWN_PROCESS:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print":
                printing.append(f"{path.relative_to(PROVIDERS)}:{node.lineno}")
    assert printing == [], "providers say through `self.say`, never print: " + str(printing)
