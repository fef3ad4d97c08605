"""`cloudinitd import` and `boot TOP.conf`: original cloudinit.d plans, converted and run.

The plans under tests/plans/original/ are written for these tests in the
original's format. The one that needs no cloud boots on real sshd hosts on
127.0.0.x; its programs leave evidence in a folder the test owns.
"""

from __future__ import annotations

import json
import re
import shutil
import tarfile
from pathlib import Path

import pytest
import yaml

from cloudinitd.errors import PlanErrors
from cloudinitd.importer import import_plan
from tests.support.cli import Cli

ORIGINAL = Path(__file__).parent / "plans" / "original"


def chain_copy(tmp_path: Path) -> Path:
    """The chain plan in a folder of the test's own, with its bundle packed as the original
    wanted it (NAME.tar.gz holding NAME/run.sh)."""
    plan = tmp_path / "chain"
    shutil.copytree(ORIGINAL / "chain", plan)
    with tarfile.open(plan / "bundle.tar.gz", "w:gz") as tar:
        tar.add(plan / "bundle", arcname="bundle")
    return plan / "top.conf"


def chain_env(out: Path, db, web) -> dict[str, str]:
    return {"ORIG_OUT": str(out), "ORIG_DB_HOST": f"{db.address}:{db.port}",
            "ORIG_WEB_HOST": f"{web.address}:{web.port}", "ORIG_SSH_USER": db.user,
            "ORIG_SSH_KEY": str(db.key_path)}


def test_import_maps_levels_deps_globals_and_hosts(tmp_path):
    top = chain_copy(tmp_path)
    env = {"ORIG_OUT": "/srv/out", "ORIG_DB_HOST": "127.0.0.9:2222",
           "ORIG_WEB_HOST": "127.0.0.10", "ORIG_SSH_USER": "deploy"}
    path, notes = import_plan(top, tmp_path / "out", environ=env)
    doc = yaml.safe_load(path.read_text())
    services = doc["services"]
    assert list(services) == ["db", "cache_1", "here", "web", "last"]  # level order, valid names
    assert services["here"]["local"] is True and services["here"]["exports"] == ["made"]
    assert "host" not in services["here"] and "ssh_user" not in services["here"]
    assert services["db"]["host"] == "127.0.0.9" and services["db"]["ssh_port"] == 2222
    assert services["cache_1"]["host"] == "db"  # ${db.hostname}: several services, one host
    assert services["web"]["host"] == "127.0.0.10" and "image" not in services["web"]
    # web reads db (a data edge), so only cache needs an explicit level edge.
    assert services["web"]["after"] == ["cache_1", "here"]
    assert "after" not in services["last"]  # reads web; the missing level3 is empty
    assert services["db"]["exports"] == ["token"]  # read by web, found in no deps file
    assert services["db"]["timeout"] == 120 and services["db"]["ssh_user"] == "deploy"
    assert doc["vars"] == {"who": "world", "greeting": "hello world"}  # %(who)s
    # deps values become `values:` (a later deps file wins); readers name them.
    assert services["db"]["values"] == {
        "port": "6543", "url": "pg://{{ self.address }}:6543/app", "out": "/srv/out",
        "evil": "'; touch /tmp/cloudinitd-importer-pwned; echo $(id) `id`"}
    web_boot = services["web"]["boot"]
    assert web_boot["args"] == ["/srv/out", "{{ db.url }}", "{{ db.token }}",
                                "{{ db.address }}", "{{ vars.greeting }}", "{{ db.evil }}",
                                "{{ run }}"]
    assert web_boot["files"] == ["programs/web-boot.sh"]
    assert (path.parent / "programs" / "web-boot.sh").read_bytes() == \
        (top.parent / "web-boot.sh").read_bytes()
    assert services["cache_1"]["boot"]["files"] == ["programs/bundle.tar.gz"]
    assert services["db"]["terminate"]["files"] == ["programs/term.sh"]  # one copy, shared
    where = {n.message.split(":")[0]: n.where for n in notes}
    level2 = top.parent / "level2.conf"
    assert any(n.where == f"{level2}:13" and "instanceid: unused on an existing host"
               in n.message for n in notes), where


def test_boot_original_plan_on_sshd_hosts(tmp_path, cli: Cli, sshd_hosts):
    db, web = sshd_hosts(2)
    out = tmp_path / "out"
    out.mkdir()
    top = chain_copy(tmp_path)
    cli.env.update(chain_env(out, db, web))

    assert "valid" in cli("validate", top).out
    levels = cli("graph", top, "--json").json()["levels"]
    assert levels[0] == ["db", "here"] and levels[-1] == ["last"]

    booted = cli("boot", top, "--name", "orig-1", "--json").json()
    assert booted["ok"] is True, booted
    assert sorted(booted["services"]) == ["cache_1", "db", "here", "last", "web"], booted
    # Arguments: templated, one word each, the hostile one intact and not run.
    assert (out / "db-args").read_text().splitlines() == ["6543", "message quote", "hello world"]
    web_args = (out / "web-args").read_text().splitlines()
    assert web_args == [f"pg://{db.address}:6543/app", "tok-42", db.address, "hello world",
                        "'; touch /tmp/cloudinitd-importer-pwned; echo $(id) `id`", "orig-1"]
    assert not Path("/tmp/cloudinitd-importer-pwned").exists()
    # bootconf: $k / ${k} from the service's deps, $$ a dollar, Jinja-looking text kept.
    conf = json.loads((out / "db-bootconf.json").read_text())
    assert conf == {"url": f"pg://{db.address}:6543/app", "port": "6543", "price": "$5",
                    "literal": "{{ not.jinja }}", "out": str(out)}
    assert 'export port="6543"' in (out / "db-bootenv.sh").read_text()
    # Run from the step's private folder (the original's stage), bootconf beside it.
    assert re.search(r"/\.cloudinitd-remote/orig-1\.[0-9a-f]{8}/db-0$",
                     (out / "db-pwd").read_text().strip())
    assert (out / "cache-payload").read_text() == "payload from the bundle\n"
    assert (out / "ready").read_text() == "ready\n"
    assert (out / "last").read_text() == f"{web.address}\nmade here\n"
    # local_exe: run here, from the stage folder in the run's private local folder.
    here = cli.home / "runs" / "orig-1" / "local" / "here-0"
    assert Path((out / "here-pwd").read_text().strip()) == here

    # reload takes the original top file too (converted again into the same folder).
    assert cli("reload", top, "--name", "orig-1", "--json").json()["ok"] is True

    done = cli("terminate", "orig-1", "--json").json()
    assert done["ok"] is True
    order = (out / "terminated").read_text().split()
    assert order[0] == "web" and sorted(order[1:]) == ["cache", "db", "here"]  # reversed


BAD = {
    "unknown service": ("[svc-a]\nhostname: 127.0.0.1\nbootpgm: p.sh\n"
                        "bootpgm_args: ${nosuch.hostname}\n", 4, "no service named 'nosuch'"),
    "missing program": ("[svc-a]\nhostname: 127.0.0.1\n\nbootpgm: gone.sh\n", 4,
                        "does not exist"),
    "no image or host": ("[svc-a]\nbootpgm: p.sh\n", 1, "neither image nor hostname"),
    "bad bootconf key": ("[svc-a]\nhostname: 127.0.0.1\nbootpgm: p.sh\nbootconf: c.json\n", 4,
                         "$nokey is not one of this service's deps values"),
    "unset global": ("[svc-a]\nhostname: 127.0.0.1\nbootpgm: p.sh\n"
                     "bootpgm_args: ${global.nope}\n", 4, "no [globals] value 'nope'"),
    "libcloud": ("[svc-a]\nimage: x\niaas: libcloud-ec2\n", 3, "libcloud"),
    "later level": None,
}


@pytest.mark.parametrize("case", [k for k, v in BAD.items() if v])
def test_bad_original_plans_fail_with_original_file_and_line(tmp_path, cli: Cli, case):
    level_text, line, message = BAD[case]
    (tmp_path / "top.conf").write_text("[runlevels]\nlevel1: level1.conf\n")
    (tmp_path / "level1.conf").write_text(level_text)
    (tmp_path / "p.sh").write_text("true\n")
    (tmp_path / "c.json").write_text('{"a": "$nokey"}\n')
    with pytest.raises(PlanErrors if case not in ("missing program",) else Exception) as exc:
        import_plan(tmp_path / "top.conf", tmp_path / "out", environ={})
    assert f"{tmp_path / 'level1.conf'}:{line}: " in str(exc.value)
    assert message in str(exc.value)
    failed = cli("validate", tmp_path / "top.conf", expect=2)
    assert f"cloudinitd: error: {tmp_path / 'level1.conf'}:{line}: " in failed.err
    assert "Traceback" not in failed.err


def test_reading_a_later_level_and_a_top_without_runlevels_are_errors(tmp_path, cli: Cli):
    (tmp_path / "top.conf").write_text("[runlevels]\nlevel1: a.conf\nlevel2: b.conf\n")
    (tmp_path / "p.sh").write_text("true\n")
    (tmp_path / "a.conf").write_text("[svc-a]\nhostname: 127.0.0.1\nbootpgm: p.sh\n"
                                     "bootpgm_args: ${b.hostname}\n")
    (tmp_path / "b.conf").write_text("[svc-b]\nhostname: 127.0.0.1\n")
    failed = cli("import", tmp_path / "top.conf", "-o", tmp_path / "out", expect=2)
    assert f"{tmp_path / 'a.conf'}:1: cannot convert: a reads b, which boots in a later level" \
        in failed.err
    (tmp_path / "top2.conf").write_text("[defaults]\nimage: x\n")
    failed = cli("import", tmp_path / "top2.conf", expect=2)
    assert f"{tmp_path / 'top2.conf'}:1: no [runlevels]" in failed.err


def test_cloud_entries_hold_credential_references_never_values(tmp_path, cli: Cli):
    (tmp_path / "top.conf").write_text(
        "[defaults]\niaas_key: env.MY_KEY\niaas_secret: env.MY_SECRET\n"
        "iaas_url: https://cloud.example.org:8444\niaas: nimbus\nimage: env.MY_IMAGE\n"
        "[cloud-other]\niaas: other-region\niaas_key: AKIAIOSFODNN7EXAMPLE\n"
        "iaas_secret: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n"
        "[runlevels]\nlevel1: l.conf\n")
    (tmp_path / "l.conf").write_text(
        "[svc-vm]\nallocation: m1.small\nsshkeyname: mykey\nreplica_count: 3\n"
        "securitygroups: default, web\n"
        "[svc-other]\ncloud: cloud-other\nscp_username: copier\nssh_username: me\n"
        "[svc-adopted]\ninstanceid: i-0abc\n[svc-vars]\n")
    env = {"MY_KEY": "AKIAIOSFODNN7EXAMPLE", "MY_SECRET": "not-to-be-copied-secret-value",
           "MY_IMAGE": "ami-12345678"}
    out = cli("import", tmp_path / "top.conf", "-o", tmp_path / "out", "--json", env=env).json()
    text = (tmp_path / "out" / "plan.yml").read_text()
    assert "not-to-be-copied" not in text and "AKIA" not in text and "wJalr" not in text
    doc = yaml.safe_load(text)
    assert doc["clouds"]["ec2"] == {
        "provider": "ec2", "region": "nimbus", "endpoint": "https://cloud.example.org:8444",
        "credentials": {"access_key_env": "MY_KEY", "secret_key_env": "MY_SECRET"}}
    assert doc["clouds"]["other"] == {"provider": "ec2", "region": "other-region",
                                      "endpoint": "https://cloud.example.org:8444"}
    vm = doc["services"]["vm"]
    assert vm == {"image": "ami-12345678", "cloud": "ec2", "size": "m1.small",
                  "key_name": "mykey", "security_groups": ["default", "web"], "count": 3,
                  "timeout": 1200}
    assert any("literal credential is not copied" in n["message"] for n in out["notes"])
    assert doc["services"]["adopted"]["instance_id"] == "i-0abc"
    assert doc["services"]["other"]["ssh_user"] == "me"
    assert "vars_svc" in doc["services"]  # `vars` names the plan's vars in templates
    scp = [n for n in out["notes"] if n["message"].startswith("scp_username")]
    assert scp and scp[0]["where"] == f"{tmp_path / 'l.conf'}:8"


def test_globals_file_ranks_above_the_top_file(tmp_path, cli: Cli):
    (tmp_path / "top.conf").write_text("[globals]\na: top\nb: top\n[runlevels]\nlevel1: l.conf\n")
    (tmp_path / "l.conf").write_text("[svc-s]\nhostname: 127.0.0.1\nbootpgm: p.sh\n"
                                     "bootpgm_args: ${global.a} ${global.c}\n")
    (tmp_path / "p.sh").write_text("true\n")
    (tmp_path / "g.ini").write_text("[globals]\na: file\nc: only-here\n")
    failed = cli("import", tmp_path / "top.conf", "-o", tmp_path / "o1", expect=2)
    assert f"{tmp_path / 'l.conf'}:4: cannot convert: ${{global.c}}" in failed.err
    cli("import", tmp_path / "top.conf", "-o", tmp_path / "o2", "-G", tmp_path / "g.ini")
    doc = yaml.safe_load((tmp_path / "o2" / "plan.yml").read_text())
    assert doc["vars"] == {"a": "file", "b": "top", "c": "only-here"}


def test_import_never_overwrites_a_plan_it_did_not_write(tmp_path, cli: Cli):
    (tmp_path / "top.conf").write_text("[runlevels]\nlevel1: l.conf\n")
    (tmp_path / "l.conf").write_text("[svc-a]\nhostname: 127.0.0.1\n")
    mine = tmp_path / "mine"
    (mine / "programs").mkdir(parents=True)
    (mine / "plan.yml").write_text("name: mine\n")
    failed = cli("import", tmp_path / "top.conf", "-o", mine, expect=2)
    assert "not made by `cloudinitd import`" in failed.err
    assert (mine / "plan.yml").read_text() == "name: mine\n" and (mine / "programs").is_dir()
    cli("import", tmp_path / "top.conf", "-o", tmp_path / "ours")
    cli("import", tmp_path / "top.conf", "-o", tmp_path / "ours")  # again: its own output
