"""The CLOUDINITD_* environment is read in one place (cloudinitd/settings.py)."""

from __future__ import annotations

import re
from pathlib import Path

from cloudinitd.paths import cloudinitd_home
from cloudinitd.plan.limits import Limits
from cloudinitd.providers.hostnet import bridge_config
from cloudinitd.settings import Settings, settings

ROOT = Path(__file__).resolve().parents[1] / "cloudinitd"
# launch-vm's Nimbus variables are that command's input (api/launchvm.py reads them).
READERS = {ROOT / "settings.py", ROOT / "api" / "launchvm.py"}


def test_no_other_module_reads_a_cloudinitd_variable() -> None:
    reads = re.compile(r"(environ|getenv)\W[^\n]*CLOUDINITD_|CLOUDINITD_\w+\W[^\n]*environ")
    found = [f"{p.relative_to(ROOT)}: {m.group(0)}" for p in ROOT.rglob("*.py")
             if p not in READERS for m in reads.finditer(p.read_text())]
    assert found == []


def test_every_setting_is_its_variable_and_follows_the_environment(monkeypatch, tmp_path):
    for name in ("home", "image_cache", "bridge", "subnet", "max_instances"):
        monkeypatch.delenv(Settings.variable(name), raising=False)
    first = settings()
    assert settings() is first  # one object while the environment stays
    monkeypatch.setenv("CLOUDINITD_HOME", str(tmp_path / "h"))
    monkeypatch.setenv("CLOUDINITD_BRIDGE", "testbr9")
    monkeypatch.setenv("CLOUDINITD_SUBNET", "10.99.0.0/28")
    monkeypatch.setenv("CLOUDINITD_MAX_INSTANCES", " 7 ")
    now = settings()
    assert now is not first and now.bridge == "testbr9"
    assert cloudinitd_home() == tmp_path / "h"
    assert now.image_cache_path() == tmp_path / "h" / "images"
    assert bridge_config().name == "testbr9" and bridge_config().gateway == "10.99.0.1"
    assert Limits.from_env().per_service == 7
