"""cloudinitd/plan/placement.py: where a service's instances come from (pure, in-process; in
the mutation test selection).

Each case is a plan and the exact errors it gets (sorted by line, as `load_plan`
reports them), or the placement it resolves to.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from cloudinitd.errors import PlanErrors
from cloudinitd.plan.loader import load_plan
from cloudinitd.plan.model import CloudPlacement


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def _load(text: str):
    Path("plan.yml").write_text(textwrap.dedent(text).lstrip())
    return load_plan("plan.yml")


def _errors(text: str) -> list[str]:
    with pytest.raises(PlanErrors) as info:
        _load(text)
    return [str(e) for e in info.value.errors]


CASES = {
    "cloud and clouds": ("""
        services:
          a:
            cloud: local
            clouds: [{cloud: qemu}]
    """, ["plan.yml:4: service 'a': use 'cloud' or 'clouds', not both"]),
    "clouds listed twice or unknown": ("""
        services:
          a:
            clouds:
              - {cloud: local, max: 2}
              - {cloud: qemu}
              - {cloud: local}
              - {cloud: lcoal}
              - {cloud: zzz}
    """, ["plan.yml:6: service 'a': cloud 'local' listed twice",
          "plan.yml:7: service 'a': unknown cloud 'lcoal' (did you mean 'local'?)",
          "plan.yml:8: service 'a': unknown cloud 'zzz' (known: local, qemu)"]),
    "unknown single cloud": ("""
        services:
          a:
            image: x
            cloud: nowhere
    """, ["plan.yml:4: service 'a': unknown cloud 'nowhere' (known: local, qemu)"]),
    "count above the clouds' room": ("""
        services:
          c:
            clouds:
              - {cloud: local, max: 1}
              - {cloud: qemu, max: 2}
            count: 4
    """, ["plan.yml:6: service 'c': count 4 is more than the clouds allow in total (3)"]),
    "templated counts": ("""
        services:
          a:
            count: "{{ vars.n }}"
          b:
            count: "{{ vars.t }}"
          c:
            count: "{{ vars.big }}"
          d:
            count: 1001
          e:
            count: "{{ vars.m }}"
        vars: {n: -3, t: two, big: "123456789012345678901", m: 1001}
    """, ["plan.yml:3: service 'a': count must be a whole number >= 0, got '-3'",
          "plan.yml:5: service 'b': count must be a whole number >= 0, got 'two'",
          "plan.yml:7: service 'c': count must be a whole number >= 0, got '123456789012345678901'",
          "plan.yml:9: service 'd': count 1001 is above the limit of 1000 instances per service"
          " (see --max-instances)",
          "plan.yml:11: service 'e': count 1001 is above the limit of 1000 instances per service"
          " (see --max-instances)"]),
    "adoption": ("""
        services:
          a:
            instance_id: i-1
            cloud: local
            count: 2
          b:
            terminate_adopted: true
          c:
            instance_id: [i-1, i-1]
            clouds: [{cloud: local}, {cloud: qemu}]
          d:
            host: 10.0.0.1
            instance_id: i-1
    """, ["plan.yml:5: service 'a': count 2 but 1 instance id(s)",
          "plan.yml:7: service 'b': terminate_adopted needs instance_id",
          "plan.yml:9: service 'c': instance_id needs exactly one cloud (cloud: NAME)",
          "plan.yml:9: service 'c': an instance id is listed twice",
          "plan.yml:13: service 'd': instance_id adopts a cloud instance; it does not go with"
          " host or local"]),
    "local in defaults": ("""
        defaults:
          local: true
        services:
          a: {}
    """, ["plan.yml:2: service 'a': `local: true` runs steps on this machine; write it in the"
          " service itself, not in defaults"]),
    # Each key once: a local service is not also told it is on an existing host.
    "launch keys on a local service": ("""
        services:
          a:
            local: true
            image: x
            ssh_user: u
            host: 10.0.0.1
            ssh_key: k
            ssh_port: 2
    """, ["plan.yml:4: service 'a': 'image' does not apply to a local service",
          "plan.yml:5: service 'a': 'ssh_user' does not apply to a local service",
          "plan.yml:6: service 'a': 'host' does not apply to a local service",
          "plan.yml:7: service 'a': 'ssh_key' does not apply to a local service",
          "plan.yml:8: service 'a': 'ssh_port' does not apply to a local service"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_placement_errors(case):
    text, expected = CASES[case]
    assert _errors(text) == expected


def test_placements_counts_and_adoption_that_hold():
    plan = _load("""
        defaults:
          cloud: qemu
        services:
          a: {}
          b:
            clouds: [{cloud: local, max: 3}, {cloud: qemu}]
            count: 3
          c:
            count: "{{ vars.n }}"
          d:
            instance_id: [i-1, i-2]
            terminate_adopted: true
            cloud: local
          e:
            count: 0
          f:
            count: 1000
          g:
            instance_id: i-9
            cloud: local
            count: 1
          h:
            local: true
        vars: {n: " 2 "}
    """)
    s = plan.services
    assert s["a"].clouds == [CloudPlacement("qemu", -1)] and s["a"].count == 1
    assert s["b"].clouds == [CloudPlacement("local", 3), CloudPlacement("qemu", -1)]
    assert s["b"].count == 3
    assert (s["c"].clouds, s["c"].count) == ([CloudPlacement("qemu", -1)], 2)
    assert (s["d"].adopt, s["d"].terminate_adopted, s["d"].count) == (["i-1", "i-2"], True, 2)
    assert s["d"].clouds == [CloudPlacement("local", -1)]
    assert (s["e"].count, s["f"].count) == (0, 1000)
    assert (s["g"].adopt, s["g"].terminate_adopted, s["g"].count) == (["i-9"], False, 1)
    assert (s["h"].local, s["h"].host, s["h"].clouds, s["h"].count) == (True, "127.0.0.1", [], 1)
