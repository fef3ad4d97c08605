"""`hosts:`: a static service with one instance per listed machine (real sshd on 127.0.0.x).

The hosts share this machine's filesystem, so scripts leave evidence in a
folder the test owns (`vars.out`), one file per instance.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cloudinitd.errors import PlanErrors
from cloudinitd.plan.inventory import parse_address
from cloudinitd.plan.limits import Limits
from cloudinitd.plan.loader import load_plan
from tests.support.cli import Cli, write_plan

ROOT_HOME = Path(os.path.expanduser("~root"))


def _entries(hosts) -> str:
    return ", ".join(f'"{h.address}:{h.port}"' for h in hosts)


def _plan(tmp_path: Path, hosts, out: Path, boot: str = "mark.sh.j2") -> Path:
    key = hosts[0].key_path
    text = (
        f"name: fleet\nvars:\n  out: {out}\nservices:\n"
        f"  web:\n    hosts: [{_entries(hosts)}]\n    ssh_key: {key}\n"
        f"    boot: {boot}\n    exports: [port]\n    terminate: term.sh.j2\n"
        f"  lb:\n    host: {hosts[0].address}\n    ssh_port: {hosts[0].port}\n"
        f"    ssh_key: {key}\n    boot: lb.sh.j2\n"
        f"  other:\n    host: {hosts[1].address}\n    ssh_port: {hosts[1].port}\n"
        f"    ssh_key: {key}\n    boot: other.sh.j2\n"
    )
    return write_plan(tmp_path / "fleet", text, {
        "mark.sh.j2": """
            echo {{ self.address }} > {{ vars.out }}/web-{{ self.index }}
            echo "port={{ self.index }}80" > "$CLOUDINITD_EXPORT"
            """,
        "fail1.sh.j2": """
            if [ "$CLOUDINITD_INDEX" = 1 ]; then echo "host one is broken"; exit 4; fi
            sleep 1
            echo {{ self.address }} > {{ vars.out }}/web-{{ self.index }}
            echo "port={{ self.index }}80" > "$CLOUDINITD_EXPORT"
            """,
        "lb.sh.j2": """
            {% for w in web.instances %}echo {{ w.address }}:{{ w.port }} >> {{ vars.out }}/lb
            {% endfor %}
            """,
        "other.sh.j2": "touch {{ vars.out }}/other\n",
        "term.sh.j2": "echo {{ self.index }} >> {{ vars.out }}/terminated\n",
    })


def test_boot_status_terminate_of_a_three_host_service(tmp_path, cli: Cli, sshd_hosts):
    out = tmp_path / "out"
    out.mkdir()
    hosts = sshd_hosts(3)
    plan = _plan(tmp_path, hosts, out)

    booted = cli("boot", plan, "--name", "fleet-1", "--json").json()
    assert booted["ok"] is True
    for i, host in enumerate(hosts):  # one instance per listed machine, in list order
        assert (out / f"web-{i}").read_text().strip() == host.address
    # A dependent sees every instance with its address and export.
    assert (out / "lb").read_text().split() == [f"{h.address}:{i}80"
                                                 for i, h in enumerate(hosts)]
    # Each instance got the step's private folder of its own index (the hosts share /root).
    for i in range(3):
        assert any(ROOT_HOME.glob(f".cloudinitd-remote/fleet-1.*/web-{i}"))

    status = cli("status", "fleet-1", "--json").json()
    web = status["services"]["web"]
    assert web["status"] == "ready"
    assert [i["address"] for i in web["instances"]] == [h.address for h in hosts]
    assert [i["attributes"]["port"] for i in web["instances"]] == ["080", "180", "280"]

    assert cli("terminate", "fleet-1", "--json").json()["ok"] is True
    assert sorted((out / "terminated").read_text().split()) == ["0", "1", "2"]
    assert not any(ROOT_HOME.glob(".cloudinitd-remote/fleet-1.*"))  # our folders are gone


def test_a_failing_host_fails_only_its_service(tmp_path, cli: Cli, sshd_hosts):
    out = tmp_path / "out"
    out.mkdir()
    hosts = sshd_hosts(3)
    plan = _plan(tmp_path, hosts, out, boot="fail1.sh.j2")

    failed = cli("boot", plan, "--name", "fleet-2", expect=1)
    assert "web failed at step boot" in failed.err
    assert "host one is broken" in failed.err
    assert "Traceback" not in failed.err
    # The siblings on the other hosts finished; the dependent never ran; the rest did.
    assert (out / "web-0").exists() and (out / "web-2").exists()
    assert not (out / "web-1").exists()
    assert not (out / "lb").exists()
    assert (out / "other").exists()
    status = cli("status", "fleet-2", "--json", expect=1).json()
    assert status["services"]["web"]["status"] == "failed"
    assert status["services"]["lb"]["status"] == "skipped"
    assert status["services"]["other"]["status"] == "ready"
    cli("terminate", "fleet-2")


def test_scale_is_refused_for_a_hosts_service(tmp_path, cli: Cli, sshd_hosts):
    out = tmp_path / "out"
    out.mkdir()
    hosts = sshd_hosts(2)
    plan = _plan(tmp_path, hosts, out)
    cli("boot", plan, "--name", "fleet-3")
    refused = cli("scale", "fleet-3", "web", "5", expect=2)
    assert refused.err.count("\n") == 1 and "Traceback" not in refused.err
    assert "cannot be scaled" in refused.err and "hosts:" in refused.err
    assert len(cli("status", "fleet-3", "--json").json()["services"]["web"]["instances"]) == 2
    cli("terminate", "fleet-3")


def test_an_ini_inventory_group_boots_its_hosts(tmp_path, cli: Cli, sshd_hosts):
    out = tmp_path / "out"
    out.mkdir()
    a, b, c = sshd_hosts(3)
    folder = tmp_path / "inv"
    folder.mkdir()
    # Ansible style: a group, ansible_host/ansible_port, a parent by :children, vars ignored.
    (folder / "inventory.ini").write_text(
        "# the lab\n"
        f"[web]\nweb-a ansible_host={a.address} ansible_port={a.port}\n"
        f"{b.address}:{b.port}   # the second\n"
        f"[db]\n{c.address}:{c.port}\n"
        "[front:children]\nweb\n"
        "[front:vars]\nhttp_port=80\n")
    plan = write_plan(folder, (
        f"name: inv\nvars:\n  out: {out}\nservices:\n"
        f"  front:\n    hosts: {{file: inventory.ini, group: front}}\n"
        f"    ssh_key: {a.key_path}\n    boot: mark.sh.j2\n"), {
        "mark.sh.j2": "echo {{ self.address }} > {{ vars.out }}/front-{{ self.index }}\n"})
    assert cli("boot", plan, "--name", "inv-1", "--json").json()["ok"] is True
    assert (out / "front-0").read_text().strip() == a.address
    assert (out / "front-1").read_text().strip() == b.address
    assert not (out / "front-2").exists()  # db is not in front
    cli("terminate", "inv-1")


# --- the forms and refusals, at load time (no host needed) ----------------------------


def _load(tmp_path: Path, service: str, files: dict[str, str] | None = None,
          limits: Limits | None = None):
    plan = write_plan(tmp_path / "p", "name: p\nservices:\n" + service, files)
    return load_plan(plan, limits=limits)


def _errors(tmp_path: Path, service: str, files: dict[str, str] | None = None,
            limits: Limits | None = None) -> list[str]:
    with pytest.raises(PlanErrors) as info:
        _load(tmp_path, service, files, limits)
    return [str(e) for e in info.value.errors]


def test_a_plain_hosts_file_gives_one_instance_per_line(tmp_path):
    plan = _load(tmp_path, "  web:\n    hosts: {file: hosts.txt}\n", {
        "hosts.txt": "# machines\n10.0.0.1\n\n  10.0.0.2:2222\n[2001:db8::7]:22\n2001:db8::8\n"})
    web = plan.services["web"]
    assert web.count == 4 and not web.launches
    assert [(h.address, h.port) for h in web.hosts] == [
        ("10.0.0.1", None), ("10.0.0.2", 2222), ("2001:db8::7", 22), ("2001:db8::8", None)]
    assert [web.ssh_port_of(i) for i in range(4)] == [22, 2222, 22, 22]


def test_an_ini_file_without_group_gives_every_host_once(tmp_path):
    plan = _load(tmp_path, "  web:\n    hosts: {file: inv.ini}\n", {
        "inv.ini": "[a]\nh1.example.com\nh2.example.com\n[b]\nh1.example.com\n"})
    assert [h.address for h in plan.services["web"].hosts] == ["h1.example.com",
                                                               "h2.example.com"]


@pytest.mark.parametrize("entry, words", [
    ("root@10.0.0.1", "names a user"),
    ("-oProxyCommand=touch /tmp/x", "starts with '-'"),
    ("10.0.0.1;reboot", "not an address"),
    ("10.0.0.1:99999", "port must be a number from 1 to 65535"),
    ("[zz::1]:22", "not an IPv6 address"),
    ("a b", "not an address"),
])
def test_bad_entries_are_refused_at_their_line(tmp_path, entry, words):
    errors = _errors(tmp_path, f'  web:\n    hosts:\n      - 10.0.0.9\n      - "{entry}"\n')
    assert len(errors) == 1 and words in errors[0]
    assert errors[0].startswith(f"{tmp_path / 'p' / 'plan.yml'}:6: ")  # the entry's own line


def test_bad_inventory_lines_are_located_in_the_inventory(tmp_path):
    errors = _errors(tmp_path, "  web:\n    hosts: {file: inv.ini, group: web}\n", {
        "inv.ini": "[web]\n10.0.0.1\nweb[01:09].example.com\n"})
    assert len(errors) == 1 and "inv.ini:3:" in errors[0] and "ranges" in errors[0]
    errors = _errors(tmp_path, "  web:\n    hosts: {file: inv.ini, group: wbe}\n", {
        "inv.ini": "[web]\n10.0.0.1\n"})
    assert "no group 'wbe'" in errors[0] and "groups: web" in errors[0]
    errors = _errors(tmp_path, "  web:\n    hosts: {file: inv.ini}\n", {
        "inv.ini": "10.0.0.1\nx ansible_port=0\n"})
    assert "inv.ini:2:" in errors[0] and "port" in errors[0]


@pytest.mark.parametrize("service, words", [
    ("  web:\n    hosts: [10.0.0.1, 10.0.0.2]\n    count: 3\n", "count 3 but hosts lists 2"),
    ("  web:\n    hosts: [10.0.0.1, 10.0.0.1]\n", "10.0.0.1 is listed twice"),
    ("  web:\n    hosts: [10.0.0.1]\n    host: 10.0.0.2\n", "'host' does not go with hosts"),
    ("  web:\n    hosts: [10.0.0.1]\n    image: x\n", "'image' does not apply"),
    ("  web:\n    hosts: {file: nowhere.txt}\n", "hosts file 'nowhere.txt' not found"),
    ("  web:\n    hosts: [10.0.0.1, 10.0.0.2, 10.0.0.3]\n", "above the limit of 2"),
])
def test_refusals(tmp_path, service, words):
    errors = _errors(tmp_path, service, limits=Limits(per_service=2, per_run=2))
    assert any(words in e for e in errors), errors


def test_a_matching_count_is_accepted_and_a_huge_file_refused(tmp_path):
    plan = _load(tmp_path, "  web:\n    hosts: [10.0.0.1, 10.0.0.2]\n    count: 2\n")
    assert plan.services["web"].count == 2
    errors = _errors(tmp_path, "  web:\n    hosts: {file: big.txt}\n",
                     {"big.txt": "10.0.0.1\n" * 40000})
    assert any("big.txt" in e and "KiB" in e or "too large" in e or "bytes" in e
               for e in errors), errors


def test_hosts_in_defaults_is_refused(tmp_path):
    plan = write_plan(tmp_path / "d", "name: d\ndefaults:\n  hosts: [10.0.0.1]\n"
                      "services:\n  web: {}\n")
    with pytest.raises(PlanErrors) as info:
        load_plan(plan)
    assert any("not in defaults" in str(e) for e in info.value.errors)


def test_parse_address_forms():
    assert parse_address("db.example.com") == ("db.example.com", None)
    assert parse_address("10.1.2.3:2200") == ("10.1.2.3", 2200)
    assert parse_address("[::1]") == ("::1", None)
    with pytest.raises(ValueError):
        parse_address("")
