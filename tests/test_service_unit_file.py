"""The systemd unit in contrib/ runs `serve` safely: loopback, hardened, instances outlive it."""

from __future__ import annotations

import configparser
from pathlib import Path

UNIT = Path(__file__).resolve().parents[1] / "contrib" / "cloudinitd.service"


def _unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string(UNIT.read_text())
    return parser


def test_unit_runs_serve_on_loopback_and_stops_only_serve():
    service = _unit()["Service"]
    argv = service["ExecStart"].split()
    assert argv[1:3] == ["serve", "--listen"] and argv[3].startswith("127.0.0.1:")
    # Containers started by serve are the groups' instances: a restart must not kill them.
    assert service["KillMode"] == "process"
    assert service["KillSignal"] == "SIGTERM"
    assert int(service["TimeoutStopSec"]) > 30  # more than serve's grace for passes under way
    assert service["Environment"].startswith("CLOUDINITD_HOME=")


def test_unit_is_hardened():
    service = _unit()["Service"]
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "full", "ProtectHome": "yes",
                       "PrivateTmp": "yes", "RestrictSUIDSGID": "yes", "UMask": "0077"}.items():
        assert service.get(key) == value, key
    assert "[Install]" in UNIT.read_text()
