"""cloudinitd/plan/samples.py: sample values and quoting warnings for `boot --dry-run`
(pure, in-process; in the mutation test selection)."""

from __future__ import annotations

import textwrap

import pytest

from cloudinitd.plan.loader import load_plan
from cloudinitd.plan.samples import quoted_values, sample_extra, sample_world, shown_values


@pytest.fixture
def plan(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "plan.yml").write_text(textwrap.dedent("""\
        services:
          db:
            exports: [db_port, api_url, endpoint, data_dir, cfg_path, web_root, admin_pass,
                      pw, secret_x, token, ssh_key, db_host, addr, note, PORTAL]
          web:
            count: 2
            values: {link: x, url: y}
          side:
            host: db
    """))
    return load_plan("plan.yml")


def test_each_sample_is_shaped_by_its_name(plan):
    world = sample_world(plan)
    db = world["db"][0]
    address = db["address"]
    expected = {
        "db_port": "8080", "PORTAL": "8080",
        "api_url": f"http://{address}:8080/", "endpoint": f"http://{address}:8080/",
        "data_dir": "/srv/db/data_dir", "cfg_path": "/srv/db/cfg_path",
        "web_root": "/srv/db/web_root",
        "admin_pass": "s3cr3t'db0", "pw": "s3cr3t'db0", "secret_x": "s3cr3t'db0",
        "token": "s3cr3t'db0", "ssh_key": "s3cr3t'db0",
        "db_host": address, "addr": address, "note": "note of db-0",
    }
    assert {k: db[k] for k in expected} == expected
    assert [(i["index"], i["link"]) for i in world["web"]] == [(0, "link of web-0"),
                                                              (1, "link of web-1")]
    assert world["web"][1]["url"] == f"http://{world['web'][1]['address']}:8080/"
    assert "link" not in world["side"][0]


def test_shown_values_name_each_instance_and_attribute(plan):
    world = sample_world(plan)
    shown = shown_values(world, plan)
    assert shown["db/0.db_port"] == "8080"
    assert shown["web/1.link"] == "link of web-1"
    assert shown["web/0.url"].startswith("http://")
    assert len(shown) == 15 + 2 * 2
    world["web"][0].pop("link")
    assert shown_values(world, plan)["web/0.link"] is None
    assert shown_values({}, plan) == {}


def test_the_sample_home():
    home = sample_extra()["home"]
    assert home == {
        "user": "alice", "dir": "/home/alice", "port": 2222, "host": "192.0.2.254",
        "key": "-----BEGIN OPENSSH PRIVATE KEY-----\n(sample)\n-----END OPENSSH PRIVATE KEY-----\n",
        "known_host": "[192.0.2.254]:2222 ssh-ed25519 AAAAC3Nza(sample)",
    }


@pytest.mark.parametrize(("text", "found"), [
    ('echo "{{ db.url }}"\n', [(1, "db.url")]),
    ("echo '{{ db.url }}'\n", [(1, "db.url")]),
    ("echo {{ db.url }}\n", []),
    ('echo "a" {{ db.url }}\n', []),
    ('echo "{{ db.url | safe }}" "{{ x|shquote }}"\n', []),
    ('echo "{{ db.url|safe|upper }}"\n', [(1, "db.url|safe|upper")]),
    ('  # echo "{{ db.url }}"\necho\n"{{ a }}" {{ b }} "{{c}}"\n', [(3, "a"), (3, "c")]),
    ('echo \\"{{ a }}\n', []),
    ('echo "\\"{{ a }}"\n', [(1, "a")]),
    ("echo '\\'{{ a }}\n", []),
    ("echo \"it's {{ a }}\"\n", [(1, "a")]),
    ("echo 'say \"{{ a }}'\n", [(1, "a")]),
    ("echo '' {{ a }}\n", []),
    ('echo "a\\"" {{ a }}\n', []),
    ('echo \\" "{{ a }}"\n', [(1, "a")]),
    ("echo X{{ a }}\n", []),
])
def test_values_inside_shell_quotes_are_found(text, found):
    assert quoted_values(text) == found
