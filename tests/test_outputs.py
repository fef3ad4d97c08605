"""Plan-level `outputs:`: checked at load, rendered with the run's world at the end of
`boot` and `status`, and by `output RUN` (real OpenSSH servers, static services)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloudinitd.errors import PlanErrors
from cloudinitd.plan.loader import load_plan
from tests.support.cli import Cli, write_plan


def _plan(folder: Path, hosts, outputs: str) -> Path:
    db, web = hosts
    return write_plan(folder, f"""
        name: outs
        vars: {{port: 8080}}
        services:
          db:
            host: {db.address}
            ssh_port: {db.port}
            ssh_key: {db.key_path}
            boot: db.sh
            exports: [token]
          web:
            host: {web.address}
            ssh_port: {web.port}
            ssh_key: {web.key_path}
            after: [db]
        outputs:
        {outputs}
        """, {"db.sh": """echo '{"token": "tok-9"}' > "$CLOUDINITD_EXPORT"\n"""})


OUTPUTS = """  url: "http://{{ web.address }}:{{ vars.port }}/"
          token: "{{ db.token }}"
"""


def test_outputs_end_boot_and_status_and_are_read_by_output(tmp_path, cli: Cli, sshd_hosts):
    hosts = sshd_hosts(2)
    plan = _plan(tmp_path / "plan", hosts, OUTPUTS)
    url = f"http://{hosts[1].address}:8080/"
    booted = cli("boot", plan, "--name", "outs")
    assert booted.out == "outs\n"  # stdout stays the run name
    assert "outputs:" in booted.err and f"url   {url}" in booted.err
    assert "token tok-9" in booted.err

    status = cli("status", "outs")
    assert status.out.rstrip().endswith("token tok-9")
    assert f"  url   {url}" in status.out
    assert cli("status", "outs", "--json").json()["outputs"] == {"url": url, "token": "tok-9"}

    whole = cli("output", "outs", "--json").json()
    assert whole["outputs"] == {"url": url, "token": "tok-9"}
    assert list(whole["services"]) == ["db", "web"]
    assert cli("output", "outs", "url", "--raw").out == url + "\n"
    assert cli("output", "outs", "token", "--json").json() == "tok-9"
    assert "outputs:" in cli("output", "outs").out


def test_boot_json_has_the_outputs(tmp_path, cli: Cli, sshd_hosts):
    hosts = sshd_hosts(2)
    plan = _plan(tmp_path / "plan", hosts, OUTPUTS)
    data = cli("boot", plan, "--name", "outj", "--json").json()
    assert data["outputs"]["token"] == "tok-9" and data["output_errors"] == {}


@pytest.mark.parametrize(("outputs", "message"), [
    ('  url: "{{ wbe.address }}"\n', "unknown service or variable 'wbe' (did you mean 'web'?)"),
    ('  t: "{{ db.tokn }}"\n', "service 'db' has no attribute 'tokn'"),
    ('  t: "{{ vars.prot }}"\n', "unknown variable 'vars.prot'"),
    ('  db: "{{ db.token }}"\n', "'db' is also a service"),
    ('  s: "{{ self.address }}"\n', "not self or home"),
    ('  s: "{{ db.token "\n', "template syntax error"),
])
def test_bad_outputs_are_plan_errors_at_their_line(tmp_path, outputs: str, message: str):
    key = tmp_path / "id_ed25519"  # never read: nothing connects; a file, as a key is
    key.write_text("")

    class Host:
        address, port, key_path = "192.0.2.1", 22, key

    plan = _plan(tmp_path / "plan", [Host, Host], outputs)
    with pytest.raises(PlanErrors) as caught:
        load_plan(plan)
    text = "\n".join(str(e) for e in caught.value.errors)
    assert message in text, text
    assert "plan.yml:16:" in text, text  # the line of the output itself


def test_outputs_cli_error_is_one_line_exit_2(tmp_path, cli: Cli):
    plan = write_plan(tmp_path / "p", """
        services:
          a: {host: 192.0.2.1}
        outputs:
          x: "{{ b.address }}"
        """)
    bad = cli("validate", plan, expect=2)
    assert bad.err.count("\n") == 1 and "plan.yml:4:" in bad.err and "Traceback" not in bad.err
