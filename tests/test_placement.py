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
from cloudinitd.plan.limits import Limits
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
    # A count that cannot be used counts as 0: no second error about the clouds' room.
    "unusable counts": ("""
        services:
          a:
            clouds: [{cloud: local, max: 0}]
            count: "{{ 1/0 }}"
          b:
            clouds: [{cloud: local, max: 0}]
            count: "{{ vars.n }}"
          c:
            clouds: [{cloud: local, max: 0}]
            count: 1001
          d:
            count: "{{ vars.twenty }}"
        vars: {n: -3, twenty: "12345678901234567890"}
    """, ["plan.yml:4: service 'a': count: ZeroDivisionError: division by zero",
          "plan.yml:7: service 'b': count must be a whole number >= 0, got '-3'",
          "plan.yml:10: service 'c': count 1001 is above the limit of 1000 instances per service"
          " (see --max-instances)",
          "plan.yml:12: service 'd': count 12345678901234567890 is above the limit of 1000"
          " instances per service (see --max-instances)"]),
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


# -- hosts: (existing machines) ----------------------------------------------

HOSTS_CASES = {
    "in defaults": ("""
        defaults:
          hosts: [10.0.0.1]
        services:
          web: {}
    """, ["plan.yml:2: service 'web': `hosts:` names one service's machines; write it in the"
          " service itself, not in defaults"]),
    "keys that do not go with hosts": ("""
        services:
          web:
            hosts: [10.0.0.1]
            instance_id: i-1
            terminate_adopted: true
            image: x
            cloud: local
    """, ["plan.yml:4: service 'web': 'instance_id' does not go with hosts:",
          "plan.yml:5: service 'web': 'terminate_adopted' does not go with hosts:",
          "plan.yml:6: service 'web': 'image' does not apply to a service on existing hosts"
          " (hosts:)",
          "plan.yml:7: service 'web': 'cloud' does not apply to a service on existing hosts"
          " (hosts:)"]),
    # Each key once: not also "terminate_adopted needs instance_id".
    "terminate_adopted with hosts": ("""
        services:
          web:
            hosts: [10.0.0.1]
            terminate_adopted: true
    """, ["plan.yml:4: service 'web': 'terminate_adopted' does not go with hosts:"]),
    "host with hosts": ("""
        services:
          web:
            hosts: [10.0.0.1]
            host: 10.0.0.2
    """, ["plan.yml:4: service 'web': 'host' does not go with hosts:"]),
    "local with hosts": ("""
        services:
          web:
            hosts: [10.0.0.1]
            local: true
    """, ["plan.yml:4: service 'web': 'local' does not go with hosts:"]),
    "count that does not match": ("""
        services:
          web:
            hosts: [10.0.0.1, 10.0.0.2]
            count: 3
    """, ["plan.yml:4: service 'web': count 3 but hosts lists 2 machine(s); leave count out"
          " (it is the number of hosts)"]),
    "bad and repeated entries": ("""
        services:
          web:
            hosts:
              - 10.0.0.1
              - root@10.0.0.2
              - 10.0.0.1
    """, ["plan.yml:5: hosts: 'root@10.0.0.2' names a user; give the address only and set"
          " ssh_user for the login",
          "plan.yml:6: hosts: 10.0.0.1 is listed twice (also line 4)"]),
    "missing file": ("""
        services:
          web:
            image: x
            hosts: {file: nowhere.txt}
    """, ["plan.yml:3: service 'web': 'image' does not apply to a service on existing hosts"
          " (hosts:)",
          "plan.yml:4: service 'web': hosts file 'nowhere.txt' not found"]),
    "too many": ("""
        services:
          web:
            hosts: [10.0.0.1, 10.0.0.2, 10.0.0.3]
            count: 7
    """, ["plan.yml:3: service 'web': hosts lists 3 machines, above the limit of 2 instances"
          " per service (see --max-instances)"]),
    "bad inventory": ("""
        services:
          web:
            hosts: {file: inv.ini, group: db}
    """, ["inv.ini:1: no group 'db' in the inventory (groups: web)"]),
}


@pytest.mark.parametrize("case", list(HOSTS_CASES))
def test_hosts_errors(case):
    Path("inv.ini").write_text("[web]\n10.0.0.7\n")
    text, expected = HOSTS_CASES[case]
    Path("plan.yml").write_text(textwrap.dedent(text).lstrip())
    with pytest.raises(PlanErrors) as info:
        load_plan("plan.yml", limits=Limits(per_service=2, per_run=2))
    assert [str(e) for e in info.value.errors] == expected


def test_hosts_from_a_list_or_a_file_beside_the_plan(tmp_path, monkeypatch, tmp_path_factory):
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "inv.ini").write_text("[web]\n10.0.0.7\n10.0.0.8:2200\n[db]\n10.0.0.9\n")
    (folder / "plan.yml").write_text(textwrap.dedent("""\
        services:
          web:
            hosts: {file: inv.ini, group: web}
            count: 2
          all:
            hosts: {file: inv.ini}
          listed:
            hosts:
              - 10.0.0.1
              - "10.0.0.2:2222"
    """))
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))  # the file is found beside the plan
    plan = load_plan(folder / "plan.yml", limits=Limits(per_service=3, per_run=10))
    s = plan.services
    assert [(h.address, h.port) for h in s["web"].hosts] == [("10.0.0.7", None),
                                                             ("10.0.0.8", 2200)]
    assert (s["web"].count, s["all"].count, s["listed"].count) == (2, 3, 2)
    assert [(h.address, h.port, h.line) for h in s["listed"].hosts] == [
        ("10.0.0.1", None, 9), ("10.0.0.2", 2222, 10)]
    assert s["listed"].hosts[0].file == str(folder / "plan.yml")
    assert s["web"].hosts[0].file == str(folder / "inv.ini")
    assert not any(s[n].launches for n in s) and all(s[n].clouds == [] for n in s)


def test_a_hosts_file_given_by_absolute_or_home_path(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    (home / "h.txt").write_text("10.0.0.3\n")
    (tmp_path / "abs.txt").write_text("10.0.0.4\n")
    plan = _load(f"""
        services:
          a:
            hosts: {{file: "~/h.txt"}}
          b:
            hosts: {{file: "{tmp_path / 'abs.txt'}"}}
    """)
    assert [h.address for h in plan.services["a"].hosts] == ["10.0.0.3"]
    assert [h.address for h in plan.services["b"].hosts] == ["10.0.0.4"]


def test_a_hosts_file_is_bounded_like_a_plan(tmp_path):
    Path("big.txt").write_text("10.0.0.1\n" * 200)
    Path("plan.yml").write_text("services:\n  web:\n    hosts: {file: big.txt}\n")
    with pytest.raises(PlanErrors) as info:
        load_plan("plan.yml", limits=Limits(plan_bytes=1024))
    assert [str(e) for e in info.value.errors] == [
        "big.txt:1: file is larger than the limit of 1 KiB"]
