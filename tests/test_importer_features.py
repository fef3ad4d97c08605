"""Plan features original cloudinit.d plans need, in the YAML language: `local: true` steps."""

from __future__ import annotations

from pathlib import Path

from tests.support.cli import Cli, write_plan


def _local_plan(tmp_path: Path, host, out: Path, local_boot: str) -> Path:
    return write_plan(tmp_path / "loc", f"""
        name: loc
        vars:
          out: {out}
        services:
          prep:
            local: true
            boot: prep.sh.j2
            terminate: term.sh.j2
            exports: [token]
          remote:
            host: {host.address}
            ssh_port: {host.port}
            ssh_key: {host.key_path}
            boot: remote.sh.j2
        """, {
        "prep.sh.j2": local_boot,
        "term.sh.j2": "echo prep >> {{ vars.out }}/terminated\n",
        "remote.sh.j2": "printf '%s\\n' {{ prep.token }} > {{ vars.out }}/remote-token\n",
    })


def test_local_step_runs_here_with_templates_and_exports(tmp_path, cli: Cli, sshd_hosts):
    host, = sshd_hosts(1)
    out = tmp_path / "out"
    out.mkdir()
    plan = _local_plan(tmp_path, host, out, """
        set -e
        pwd > {{ vars.out }}/prep-pwd
        echo {{ self.address }} {{ run }} > {{ vars.out }}/prep-self
        printf '%s' "$CLOUDINITD_STEP" > {{ vars.out }}/prep-step
        echo "token=tok; \\$(id)" > "$CLOUDINITD_EXPORT"
        """)
    assert cli("boot", plan, "--name", "loc-1", "--json").json()["ok"] is True
    workdir = cli.home / "runs" / "loc-1" / "local" / "prep-0"
    assert Path((out / "prep-pwd").read_text().strip()) == workdir
    assert (workdir.stat().st_mode & 0o777) == 0o700
    assert (out / "prep-self").read_text() == "127.0.0.1 loc-1\n"
    assert (out / "prep-step").read_text() == "boot"
    assert (out / "remote-token").read_text() == "tok; $(id)\n"  # exported, read as text
    assert cli("terminate", "loc-1", "--json").json()["ok"] is True
    assert (out / "terminated").read_text() == "prep\n"
    assert not workdir.exists()


def test_local_step_failure_is_reported_with_its_log(tmp_path, cli: Cli, sshd_hosts):
    host, = sshd_hosts(1)
    out = tmp_path / "out"
    out.mkdir()
    plan = _local_plan(tmp_path, host, out, "echo 'local trouble' >&2\nexit 4\n")
    failed = cli("boot", plan, "--name", "loc-2", expect=1)
    assert "prep failed at step boot" in failed.err and "local trouble" in failed.err
    assert not (out / "remote-token").exists()


def test_local_must_be_declared_by_the_service_and_excludes_hosts(tmp_path, cli: Cli):
    plan = write_plan(tmp_path / "d", """
        name: d
        defaults:
          local: true
        services:
          a:
            boot: a.sh.j2
        """, {"a.sh.j2": "true\n"})
    failed = cli("validate", plan, expect=2)
    assert f"{plan}:3: service 'a': `local: true` runs steps on this machine; write it in" \
        " the service itself" in failed.err
    plan = write_plan(tmp_path / "e", """
        name: e
        services:
          a:
            local: true
            image: debian-12
            host: 192.0.2.1
            boot: a.sh.j2
          b:
            host: a
            boot: a.sh.j2
        """, {"a.sh.j2": "true\n"})
    failed = cli("validate", plan, expect=2)
    assert f"{plan}:5: service 'a': 'image' does not apply to a local service" in failed.err
    assert f"{plan}:6: service 'a': 'host' does not apply to a local service" in failed.err
    assert f"{plan}:9: service 'b': host 'a' is a local service" in failed.err
    plan = write_plan(tmp_path / "f", """
        name: f
        services:
          a:
            local: "yes"
            boot: a.sh.j2
        """, {"a.sh.j2": "true\n"})
    assert f"{plan}:4: " in cli("validate", plan, expect=2).err


def _bundle(root: Path) -> None:
    (root / "bundle" / "sub").mkdir(parents=True)
    (root / "bundle" / "run.sh").write_text("#!/bin/sh\necho ran-from-bundle\n")
    (root / "bundle" / "run.sh").chmod(0o755)
    (root / "bundle" / "sub" / "data").write_text("bundle data\n")
    (root / "bundle" / "inside-link").symlink_to("sub/data")  # inside the bundle: fine
    (root / "conf.json").write_text('{"k": 1}\n')


def test_step_args_are_templated_quoted_words_and_files_ship_beside(tmp_path, cli: Cli,
                                                                     sshd_hosts):
    src, dst = sshd_hosts(2)
    out = tmp_path / "out"
    out.mkdir()
    plan_dir = tmp_path / "args"
    plan_dir.mkdir()
    _bundle(plan_dir)
    steps = """
            boot:
              script: use.sh.j2
              args: ["{{ src.evil }}", "two  words", "{{ vars.out }}", 5, "", "$(id)"]
              files: [bundle, conf.json]
    """
    plan = write_plan(plan_dir, f"""
        name: args
        vars:
          out: {out}
        services:
          src:
            host: {src.address}
            ssh_port: {src.port}
            ssh_key: {src.key_path}
            boot: src.sh.j2
            exports: [evil]
          use:
            host: {dst.address}
            ssh_port: {dst.port}
            ssh_key: {dst.key_path}
{steps}
          here:
            local: true
{steps}
        """, {
        "src.sh.j2": """echo '{"evil": "a'"'"'; touch /tmp/cid-args-pwned; echo \\\\"$(id)"}' """
                     """> "$CLOUDINITD_EXPORT"\n""",
        "use.sh.j2": """
            set -e
            out="$3"
            for a in "$@"; do printf '[%s]\\n' "$a"; done > "$out/{{ self.name }}-args"
            cd bundle
            ./run.sh > "$out/{{ self.name }}-ran"
            cat sub/data inside-link ../conf.json > "$out/{{ self.name }}-files"
            """,
    })
    assert cli("graph", plan, "--json").json()["edges"] == [["src", "here"], ["src", "use"]]
    assert cli("boot", plan, "--name", "args-1", "--json").json()["ok"] is True
    for who in ("use", "here"):
        lines = (out / f"{who}-args").read_text().splitlines()
        assert lines[1:] == ["[two  words]", f"[{out}]", "[5]", "[]", "[$(id)]"], who
        assert lines[0].startswith("[a'; touch /tmp/cid-args-pwned"), lines[0]
        assert (out / f"{who}-ran").read_text() == "ran-from-bundle\n"
        assert (out / f"{who}-files").read_text() == 'bundle data\nbundle data\n{"k": 1}\n'
    assert not Path("/tmp/cid-args-pwned").exists()


def test_bundle_symlinks_pointing_outside_are_refused_at_load(tmp_path, cli: Cli):
    plan_dir = tmp_path / "sym"
    plan_dir.mkdir()
    _bundle(plan_dir)
    (plan_dir / "bundle" / "sub" / "key").symlink_to("/etc/shadow")
    (plan_dir / "elsewhere").symlink_to(tmp_path)
    plan = write_plan(plan_dir, """
        name: sym
        services:
          a:
            local: true
            boot:
              script: a.sh.j2
              files:
                - bundle
                - elsewhere
                - missing.txt
        """, {"a.sh.j2": "true\n"})
    failed = cli("validate", plan, expect=2)
    assert f"{plan}:8: service 'a': boot files: symlink bundle/sub/key points outside the" \
        " bundle" in failed.err
    assert f"{plan}:9: service 'a': boot files: elsewhere is a symlink pointing outside the" \
        " plan folder" in failed.err
    assert f"{plan}:10: service 'a': boot file 'missing.txt' not found" in failed.err


def test_values_are_read_by_others_like_exports(tmp_path, cli: Cli, sshd_hosts):
    db, web = sshd_hosts(2)
    out = tmp_path / "out"
    out.mkdir()
    plan = write_plan(tmp_path / "vals", f"""
        name: vals
        vars:
          out: {out}
        services:
          conf:
            local: true
            values:
              evil: "'; touch /tmp/cid-values-pwned; '"
          db:
            host: {db.address}
            ssh_port: {db.port}
            ssh_key: {db.key_path}
            values:
              port: 5432
              url: "pg://{{{{ self.address }}}}:5432/{{{{ conf.evil | length }}}}"
            boot: db.sh.j2
            exports: [token]
          web:
            host: {web.address}
            ssh_port: {web.port}
            ssh_key: {web.key_path}
            boot: web.sh.j2
        """, {
        "db.sh.j2": "echo {{ self.port }} > {{ vars.out }}/db-port\n"
                    "echo token=t1 > \"$CLOUDINITD_EXPORT\"\n",
        "web.sh.j2": "printf '%s\\n' {{ db.url }} {{ db.port }} {{ db.token }} {{ conf.evil }}"
                     " > {{ vars.out }}/web\n",
    })
    graph = cli("graph", plan, "--json").json()
    assert graph["edges"] == [["conf", "db"], ["conf", "web"], ["db", "web"]]
    assert cli("boot", plan, "--name", "vals-1", "--json").json()["ok"] is True
    assert (out / "db-port").read_text() == "5432\n"  # its own scripts read them too
    assert (out / "web").read_text().splitlines() == [
        f"pg://{db.address}:5432/33", "5432", "t1", "'; touch /tmp/cid-values-pwned; '"]
    assert not Path("/tmp/cid-values-pwned").exists()


def test_values_errors_are_located(tmp_path, cli: Cli):
    plan = write_plan(tmp_path / "bad", """
        name: bad
        services:
          a:
            local: true
            exports: [port]
            values:
              port: 1
              address: x
          b:
            local: true
            boot: b.sh.j2
        """, {"b.sh.j2": "echo {{ a.prot }}\n"})
    failed = cli("validate", plan, expect=2)
    assert f"{plan}:7: service 'a': 'port' is both a value and an export" in failed.err
    assert f"{plan}:8: service 'a': value 'address' is built in" in failed.err


def test_environ_reads_this_machines_environment_with_defaults(tmp_path, cli: Cli):
    plan = write_plan(tmp_path / "envp", """
        name: envp
        services:
          a:
            local: true
            boot: a.sh.j2
        """, {"a.sh.j2": "echo {{ environ.CID_TEST_IMAGE }} {{ environ.CID_UNSET_X | default('dflt') }}"
                         " {{ environ.CID_TEST_PASSWORD | default('hidden') }}\n"})
    env = {"CID_TEST_IMAGE": "img; $(id)", "CID_TEST_PASSWORD": "hunter2"}
    report = cli("boot", plan, "--dry-run", "--json", env=env).json()
    # Shell-quoted like every value; secret-named variables are not readable.
    assert report["instances"][0]["scripts"]["boot"] == "echo 'img; $(id)' dflt hidden\n"
    failed = cli("boot", plan, "--dry-run", expect=2)
    assert "a.sh.j2:1: " in failed.err and "environ.CID_TEST_IMAGE" in failed.err


def test_instance_id_adopts_and_terminate_leaves_it_unless_told(tmp_path, ec2_cloud):
    from tests.support.testcloud import ACCESS_KEY, SECRET_KEY

    cloud = ec2_cloud("adopt")
    client = cloud.client()
    ids = [i["InstanceId"] for i in client.run_instances(
        ImageId="ami-12345678", MinCount=2, MaxCount=2)["Instances"]]
    cli = Cli(tmp_path / "home", env={"AD_AK": ACCESS_KEY, "AD_SK": SECRET_KEY})

    def state(instance_id: str) -> str:
        found = client.describe_instances(InstanceIds=[instance_id])
        return found["Reservations"][0]["Instances"][0]["State"]["Name"]

    def plan(name: str, extra: str, adopt: str) -> Path:
        return write_plan(tmp_path / name, f"""
            name: {name}
            clouds:
              c: {{provider: ec2, endpoint: "{cloud.endpoint}", region: us-east-1,
                   credentials: {{access_key_env: AD_AK, secret_key_env: AD_SK}}}}
            services:
              kept:
                cloud: c
                instance_id: {adopt}
                {extra}
            """)

    booted = cli("boot", plan("keep", "", ids[0]), "--name", "keep-1", "--json").json()
    assert booted["ok"] is True
    status = cli("status", "keep-1", "--json").json()
    assert [i["instance_id"] for i in status["services"]["kept"]["instances"]] == [ids[0]]
    assert cloud.calls("RunInstances") == 1  # ours above; the run launched nothing
    done = cli("terminate", "keep-1", "--json").json()
    assert done["ok"] is True and done["terminated"] == []
    assert state(ids[0]) == "running"  # adopted, so left running

    cli("boot", plan("end", "terminate_adopted: true", f"[{ids[1]}]"), "--name", "end-1")
    cli("terminate", "end-1")
    assert state(ids[1]) in ("shutting-down", "terminated")

    failed = cli("boot", plan("gone", "", "i-00000000deadbeef0"), "--name", "gone-1", expect=1)
    assert "i-00000000deadbeef0" in failed.err


def test_instance_id_errors_are_located(tmp_path, cli: Cli):
    plan = write_plan(tmp_path / "bad", """
        name: bad
        clouds:
          c: {provider: ec2, region: us-east-1}
        services:
          a:
            host: 192.0.2.1
            instance_id: i-1
          b:
            cloud: c
            count: 3
            instance_id: [i-1, i-2]
          d:
            cloud: c
            terminate_adopted: true
        """)
    failed = cli("validate", plan, expect=2)
    assert f"{plan}:7: service 'a': instance_id adopts a cloud instance" in failed.err
    assert f"{plan}:10: service 'b': count 3 but 2 instance id(s)" in failed.err
    assert f"{plan}:14: service 'd': terminate_adopted needs instance_id" in failed.err


def test_static_hostname_is_what_the_host_reports_else_its_address(tmp_path, cli: Cli,
                                                                   sshd_hosts):
    import socket

    a, b = sshd_hosts(2)
    out = tmp_path / "out"
    out.mkdir()
    plan = write_plan(tmp_path / "hn", f"""
        name: hn
        vars:
          out: {out}
        services:
          a:
            host: {a.address}
            ssh_port: {a.port}
            ssh_key: {a.key_path}
            boot: a.sh.j2
          quiet:
            host: {b.address}
          reader:
            local: true
            boot: r.sh.j2
        """, {"a.sh.j2": "echo {{ self.hostname }} > {{ vars.out }}/a-self\n",
              "r.sh.j2": "echo {{ a.hostname }} {{ quiet.hostname }} > {{ vars.out }}/r\n"})
    assert cli("boot", plan, "--name", "hn-1", "--json").json()["ok"] is True
    me = socket.gethostname()  # every test sshd runs on this machine
    assert (out / "a-self").read_text() == f"{me}\n"
    assert (out / "r").read_text() == f"{me} {b.address}\n"  # no scripts: no connection


def test_local_steps_cannot_escape_their_template_context(tmp_path, cli: Cli):
    marker = tmp_path / "escaped"
    attempts = [
        f"{{{{ cycler.__init__.__globals__.os.system('touch {marker}') }}}}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        f"{{{{ self.__class__.__init__.__globals__['os'].system('touch {marker}') }}}}",
        "{{ environ.__class__.__bases__ }}",
    ]
    for n, text in enumerate(attempts):
        plan = write_plan(tmp_path / f"esc{n}", f"""
            name: esc{n}
            services:
              here:
                local: true
                boot: b.sh.j2
            """, {"b.sh.j2": text + "\n"})
        failed = cli("boot", plan, "--dry-run", expect=2)
        assert "b.sh.j2:1: " in failed.err and "Traceback" not in failed.err, failed.err
        # Refused at load (exit 2) or when the step renders (the service fails, exit 1).
        booted = cli("boot", plan, "--name", f"esc-{n}", expect=None)
        assert booted.code in (1, 2) and "b.sh.j2:1: " in booted.err, booted.err
    assert not marker.exists()
