"""`boot --dry-run --show-values`: realistic sample values, the quoting warning, the notes."""

from __future__ import annotations

import shlex

from cloudinitd.plan.samples import quoted_values
from tests.support.cli import Cli, write_plan


def _plan(tmp_path):
    return write_plan(tmp_path / "p", """
        name: vals
        services:
          db:
            host: 192.0.2.7
            boot: db.sh.j2
            exports: [password, port, url]
          web:
            host: 192.0.2.8
            boot: web.sh.j2
        """, {"db.sh.j2": "echo hi\n", "web.sh.j2": """
        PW="{{ db.password }}"
        PORT={{ db.port }}
        URL={{ db.url }}
        RAW={{ db.url|safe }}
        """})


def test_show_values_renders_realistic_values_quoted(tmp_path, cli: Cli):
    plan = _plan(tmp_path)
    text = cli("boot", plan, "--dry-run", "--show-values").out
    secret = "s3cr3t'db0"
    # The sample secret has a quote in it, and arrives quoted for the shell.
    assert f"db/0.password = {secret}" in text
    assert "PORT=8080\n" in text
    assert f"URL={shlex.quote('http://192.0.2.7:8080/')}\n" in text
    assert "RAW=http://192.0.2.7:8080/\n" in text
    # Inside double quotes the quoted value keeps its quotes: shown, and warned about.
    assert f'PW="{shlex.quote(secret)}"' in text
    assert "web.sh.j2:1: {{ db.password }} is inside shell quotes" in text
    assert "values arrive shell-quoted" in text and "idempotent" in text
    data = cli("boot", plan, "--dry-run", "--show-values", "--json").json()
    assert data["sample_values"]["db/0.port"] == "8080"
    assert len(data["warnings"]) == 1

    # Without --show-values: placeholders, the same notes and warning; nothing launched.
    plain = cli("boot", plan, "--dry-run").out
    assert "PORT='<db.port>'" in plain and "warning:" in plain and "notes:" in plain
    assert cli("list").out.strip() == "no runs"


def test_show_values_needs_dry_run(tmp_path, cli: Cli):
    bad = cli("boot", _plan(tmp_path), "--show-values", expect=2)
    assert "--show-values goes with --dry-run" in bad.err


def test_quoted_values_finds_expressions_inside_quotes_only():
    text = ('A="{{ a }}"\nB={{ b }}\nC=\'x {{ c }}\'\nD="{{ d|safe }}"\n'
            '# "{{ e }}" in a comment\nF="x" {{ f }}\nG="\\"{{ g }}"\n')
    assert quoted_values(text) == [(1, "a"), (3, "c"), (7, "g")]
