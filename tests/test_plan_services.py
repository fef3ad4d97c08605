"""cloudinitd/plan/services.py: one service entry normalised into a ServiceSpec (pure,
in-process; in the mutation test selection).

Each case is a small plan in a temporary folder, loaded with `load_plan` from
inside that folder, so messages read `plan.yml:LINE: ...`.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from cloudinitd.errors import PlanErrors
from cloudinitd.plan.loader import load_plan
from cloudinitd.plan.model import CloudPlacement, Pos

SCRIPTS = ("b.sh", "r.sh", "t.sh")


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in SCRIPTS:
        (tmp_path / name).write_text("#!/bin/sh\necho hi\n")
    return tmp_path


def _write(folder: Path, text: str) -> Path:
    path = folder / "plan.yml"
    path.write_text(textwrap.dedent(text).lstrip())
    return Path("plan.yml")


def _errors(folder: Path, text: str, **kwargs) -> list[str]:
    with pytest.raises(PlanErrors) as info:
        load_plan(_write(folder, text), **kwargs)
    assert info.value.exit_code == 2
    return [str(e).replace(f"{folder}/", "") for e in info.value.errors]


# -- step args and files ---------------------------------------------------


def test_step_args_are_strings_with_one_line_each(folder):
    plan = load_plan(_write(folder, """
        services:
          a:
            boot:
              script: b.sh
              args:
                - Plain
                - true
                - 3
                - "{{ vars.v }}"
        vars: {v: 1}
    """))
    boot = plan.services["a"].scripts["boot"]
    assert boot.args == ["Plain", "true", "3", "{{ vars.v }}"]
    assert boot.args_pos == [Pos("plan.yml", n) for n in (6, 7, 8, 9)]
    assert boot.pos == Pos("plan.yml", 4)
    assert boot.files == []


def test_a_step_without_args_or_files_has_none(folder):
    plan = load_plan(_write(folder, """
        services:
          a:
            boot: {script: b.sh}
            ready: r.sh
    """))
    scripts = plan.services["a"].scripts
    assert (scripts["boot"].args, scripts["boot"].files) == ([], [])
    assert scripts["ready"].pos == Pos("plan.yml", 4)


def test_step_files_resolve_beside_the_plan_or_home_or_absolute(folder, monkeypatch, tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    (home / "conf.ini").write_text("x=1\n")
    (folder / "data.txt").write_text("data\n")
    (folder / "site").mkdir()
    (folder / "site" / "index.html").write_text("<p>hi</p>\n")
    elsewhere = tmp_path_factory.mktemp("abs") / "abs.txt"
    elsewhere.write_text("a\n")
    plan = load_plan(_write(folder, f"""
        services:
          a:
            boot:
              script: b.sh
              files: [data.txt, site, "~/conf.ini", "{elsewhere}"]
    """))
    files = plan.services["a"].scripts["boot"].files
    assert files == [folder / "data.txt", folder / "site", home / "conf.ini", elsewhere]
    assert all(p.is_absolute() for p in files)


def test_bad_step_files_are_reported_at_their_item(folder, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside") / "secret"
    outside.write_text("s\n")
    (folder / "link").symlink_to(outside)
    (folder / "dangling").symlink_to(folder / "nowhere")
    (folder / "one").mkdir()
    (folder / "one" / "x.txt").write_text("1\n")
    (folder / "two").mkdir()
    (folder / "two" / "x.txt").write_text("2\n")
    errors = _errors(folder, """
        services:
          a:
            ready:
              script: r.sh
              files:
                - missing.txt
                - link
                - dangling
                - one/x.txt
                - two/x.txt
    """)
    # Errors come sorted by line: the duplicate is reported at the `files:` key.
    assert errors == [
        "plan.yml:5: service 'a': ready files: two entries named 'x.txt'",
        "plan.yml:6: service 'a': ready file 'missing.txt' not found",
        "plan.yml:7: service 'a': ready files: link is a symlink pointing outside the plan folder",
        "plan.yml:8: service 'a': ready files: dangling is not a file or folder",
    ]


def test_files_of_a_missing_script_are_not_checked(folder):
    errors = _errors(folder, """
        services:
          a:
            boot:
              script: gone.sh
              files: [missing.txt]
    """)
    assert len(errors) == 1
    assert errors[0].startswith("plan.yml:4: service 'a': boot script 'gone.sh' not found")


def test_duplicate_names_are_listed_once_each_in_order(folder):
    for sub in ("p", "q", "r"):
        (folder / sub).mkdir()
        for leaf in ("b.txt", "a.txt"):
            (folder / sub / leaf).write_text(sub)
    errors = _errors(folder, """
        services:
          a:
            boot:
              script: b.sh
              files: [p/b.txt, q/b.txt, r/b.txt, p/a.txt, q/a.txt]
    """)
    assert errors == [
        "plan.yml:5: service 'a': boot files: two entries named 'a.txt'",
        "plan.yml:5: service 'a': boot files: two entries named 'b.txt'",
    ]


# -- fields rendered at load time (count, host) -----------------------------

ESCAPE = "{{ cycler.__init__.__globals__ }}"


def test_after_one_runaway_template_no_other_is_run(folder):
    errors = _errors(folder, f"""
        vars: {{h: 127.0.0.5}}
        services:
          a:
            count: "{ESCAPE}"
          b:
            host: "{ESCAPE}"
          c:
            count: "{{{{ 1/0 }}}}"
    """)
    assert errors == [
        "plan.yml:4: service 'a': count: not allowed in a template: access to attribute"
        " '__init__' of 'type' object is unsafe",
    ]


def test_an_ordinary_template_error_does_not_stop_the_others(folder):
    errors = _errors(folder, """
        services:
          a:
            count: "{{ 1/0 }}"
          b:
            host: "{{ vars.nope }}"
    """)
    assert errors == [
        "plan.yml:3: service 'a': count: ZeroDivisionError: division by zero",
        "plan.yml:5: service 'b': host: undefined 'vars.nope'",
    ]


def test_step_files_are_found_beside_the_plan_from_any_folder(folder, monkeypatch,
                                                              tmp_path_factory):
    (folder / "data.txt").write_text("data\n")
    _write(folder, """
        services:
          a:
            boot:
              script: b.sh
              files: [data.txt]
    """)
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    plan = load_plan(folder / "plan.yml")
    assert plan.services["a"].scripts["boot"].files == [folder / "data.txt"]


# -- one service, whole ------------------------------------------------------

def test_a_service_normalised_whole(folder, monkeypatch, tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    plan = load_plan(_write(folder, """
        defaults:
          ssh_user: admin
          env: {A: from-defaults, B: 1}
          values: {shared: x}
          timeout: 2m
        services:
          db:
            image: debian
            size: small
            after: web
            ssh_port: 2222
            ssh_key: keys/id
            exports: [token, token, url]
            values: {flag: true, n: 3, Mixed: Up}
            env: {B: false, C: "{{ vars.v }}", D: Up}
            boot: b.sh
            ready: {script: r.sh}
            terminate: t.sh
            lifetime: 1h
            spot: {max_price: 0.5}
            preserve: true
            user_data: "#!/bin/sh"
          web:
            ssh_key: ~/k
            after: []
        vars: {v: 1}
    """))
    db, web = plan.services["db"], plan.services["web"]
    assert (db.image, db.size, db.after) == ("debian", "small", ["web"])
    assert (db.ssh_user, db.ssh_port) == ("admin", 2222)
    assert db.ssh_key == folder / "keys" / "id"
    assert web.ssh_key == home / "k"
    assert (web.image, web.size, web.after, web.ssh_port) == (None, None, [], 22)
    assert db.exports == ["token", "url"]
    assert db.values == {"flag": "true", "n": "3", "Mixed": "Up"}  # values replace, env merges
    assert web.values == {"shared": "x"}
    assert db.env == {"A": "from-defaults", "B": "false", "C": "{{ vars.v }}", "D": "Up"}
    assert web.env == {"A": "from-defaults", "B": "1"}
    assert list(db.scripts) == ["boot", "ready", "terminate"]
    assert db.scripts["ready"].ref == "r.sh" and db.scripts["ready"].pos.line == 17
    assert (db.timeout, db.lifetime, web.timeout, web.lifetime) == (120.0, 3600.0, 120.0, None)
    assert db.spot == {"max_price": 0.5} and type(db.spot) is dict and web.spot is None
    assert (db.preserve, web.preserve) == (True, False)
    assert db.options == {"user_data": b"#!/bin/sh"} and web.options == {}  # bytes, as sent
    assert db.pos == Pos("plan.yml", 7) and web.pos == Pos("plan.yml", 23)
    assert db.field_pos["env.A"] == Pos("plan.yml", 3)
    assert db.field_pos["env.C"] == Pos("plan.yml", 15)
    assert db.field_pos["values.flag"] == Pos("plan.yml", 14)
    assert web.field_pos["values.shared"] == Pos("plan.yml", 4)
    assert db.field_pos["after"] == Pos("plan.yml", 10)


def test_defaults_list_positions_and_placement_choice(folder):
    plan = load_plan(_write(folder, """
        defaults:
          clouds:
            - {cloud: qemu, max: 1}
            - {cloud: local}
        services:
          a:
            cloud: local
          b: {}
          c:
            after: [b,
              a]
    """))
    a, b, c = (plan.services[n] for n in "abc")
    assert (a.timeout, a.lifetime, a.env, a.values, a.exports) == (1200.0, None, {}, {}, [])
    assert a.clouds == [CloudPlacement("local", -1)]
    assert b.clouds == [CloudPlacement("qemu", 1), CloudPlacement("local", -1)]
    assert b.field_pos["clouds[1]"] == Pos("plan.yml", 4)
    assert c.after == ["b", "a"] and c.field_pos["after[1]"] == Pos("plan.yml", 11)
    assert c.field_pos["after[0]"] == Pos("plan.yml", 10)


SERVICE_ERRORS = {
    "reserved name": ("""
        services:
          range: {}
    """, ["plan.yml:2: service name 'range' is reserved in templates; choose another"]),
    "host on a local service": ("""
        services:
          here:
            local: true
          web:
            host: here
    """, ["plan.yml:5: service 'web': host 'here' is a local service (this machine); give"
          " this service `local: true` instead"]),
    "bad hosts": ("""
        vars: {h: "a;b", ok: 10.0.0.5}
        services:
          a:
            host: "x y"
          b:
            host: "{{ vars.h }}"
          c:
            host: "{{ vars.ok }}"
          d:
            host: c
          e:
            host: e
          f:
            host: db1
          db:
            host: 10.0.0.9
    """, ["plan.yml:4: service 'a': host 'x y' is not an address or a service name",
          "plan.yml:6: service 'b': host renders to 'a;b', not an address or a service name",
          "plan.yml:12: service 'e': host cannot be the service itself",
          "plan.yml:14: service 'f': host 'db1' is not a service (did you mean 'db'?); write a"
          " full address for an existing host"]),
    # A host that fails to render is still a host: its launch keys are refused too.
    "unrendered host": ("""
        services:
          a:
            host: "{{ 1/0 }}"
            image: x
    """, ["plan.yml:3: service 'a': host: ZeroDivisionError: division by zero",
          "plan.yml:4: service 'a': 'image' does not apply to a service on an existing host"
          " (host: {{ 1/0 }})"]),
    "launch keys on a host": ("""
        services:
          a:
            host: 10.0.0.1
            size: big
            image: x
            autoscale: {min: 1, max: 2, sensor: b.sh, target: 1}
    """, ["plan.yml:4: service 'a': 'size' does not apply to a service on an existing host"
          " (host: 10.0.0.1)",
          "plan.yml:5: service 'a': 'image' does not apply to a service on an existing host"
          " (host: 10.0.0.1)",
          "plan.yml:6: service 'a': 'autoscale' does not apply to a service on an existing host"
          " (host: 10.0.0.1)"]),
    "exports and values": ("""
        services:
          a:
            exports: [address, count, token]
            values:
              token: x
              name: y
              instances: z
              ok: 1
    """, ["plan.yml:3: service 'a': 'address' is built in; it cannot be exported",
          "plan.yml:3: service 'a': 'count' is built in; it cannot be exported",
          "plan.yml:5: service 'a': 'token' is both a value and an export",
          "plan.yml:6: service 'a': value 'name' is built in; choose another name",
          "plan.yml:7: service 'a': value 'instances' is built in; choose another name"]),
    "values from defaults at their line": ("""
        defaults:
          values:
            index: 1
        services:
          a: {}
    """, ["plan.yml:3: service 'a': value 'index' is built in; choose another name"]),
    "bad step script": ("""
        services:
          a:
            ready:
              args: [x]
              script: gone.sh
    """, ["plan.yml:5: service 'a': ready script 'gone.sh' not found (looked in ./ and"
          " bootlevels/./)"]),
}


@pytest.mark.parametrize("case", list(SERVICE_ERRORS))
def test_service_errors(folder, case):
    text, expected = SERVICE_ERRORS[case]
    assert _errors(folder, text) == expected


def test_launch_defaults_skip_services_on_existing_machines(folder):
    plan = load_plan(_write(folder, """
        defaults:
          image: debian
          lifetime: 1h
          ssh_user: admin
          size: small
          env:
            A: 1
            B: 2
        services:
          launched: {}
          on_address:
            host: 10.0.0.1
          listed:
            hosts: [10.0.0.2]
    """))
    s = plan.services
    assert (s["launched"].image, s["launched"].size, s["launched"].lifetime) == (
        "debian", "small", 3600.0)
    for name in ("on_address", "listed"):
        assert (s[name].image, s[name].size, s[name].lifetime) == (None, None, None), name
        assert s[name].ssh_user == "admin", name  # not a launch key: it still applies
    assert s["listed"].field_pos["env.B"] == Pos("plan.yml", 8)


def test_a_host_in_defaults_makes_launch_defaults_skip(folder):
    plan = load_plan(_write(folder, """
        defaults:
          host: 10.0.0.1
          image: debian
        services:
          a: {}
    """))
    assert (plan.services["a"].host, plan.services["a"].image) == ("10.0.0.1", None)


def test_a_host_with_a_dot_or_colon_is_an_address_even_near_a_service_name(folder):
    plan = load_plan(_write(folder, """
        services:
          dbh: {}
          db2: {}
          a: {host: db.h}
          b: {host: "db:2"}
    """))
    assert (plan.services["a"].host, plan.services["b"].host) == ("db.h", "db:2")


def test_a_field_without_a_line_of_its_own_is_placed_at_its_service(tmp_path: Path) -> None:
    plan_file = tmp_path / "plan.yml"
    plan_file.write_text("services:\n  db: {}\n  web:\n    env: {A: x}\n")
    web = load_plan(plan_file).services["web"]
    assert web.pos_of("env.A") == Pos(str(plan_file), 4)
    # A field the plan does not give (a default): errors about it point at the service.
    assert web.pos_of("timeout") == web.pos == Pos(str(plan_file), 3)
