"""load_plan: good plans resolve to the right structure; every bad plan fails at FILE:LINE.

Bad plans live in tests/plans/bad/, each with `# expect:` lines giving the
exact errors, in order; adding a case is adding a file.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cloudinitd.errors import PlanErrors, UsageError
from cloudinitd.paths import cloudinitd_home, display_path, find_plan, shipped_dir
from cloudinitd.plan.limits import Limits
from cloudinitd.plan.loader import load_plan, parse_override
from cloudinitd.plan.model import CloudPlacement, CloudSpec, Pos
from tests.support.hostile import within

PLANS = Path(__file__).parent / "plans"
BAD = sorted((PLANS / "bad").glob("*.yml"))


@pytest.fixture(autouse=True)
def in_plans(monkeypatch):
    # Messages name files relative to the working folder: make that fixed.
    monkeypatch.chdir(PLANS)


def expected_errors(path: Path) -> list[str]:
    return [
        line.removeprefix("# expect: ").rstrip("\n")
        for line in path.read_text().splitlines()
        if line.startswith("# expect: ")
    ]


def test_every_bad_plan_states_its_errors():
    assert len(BAD) >= 15
    for path in BAD:
        assert expected_errors(path), f"{path.name} has no '# expect:' line"


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_bad_plan_reports_exact_file_line_and_message(path):
    with pytest.raises(PlanErrors) as info:
        load_plan(Path("bad") / path.name)
    assert [str(e) for e in info.value.errors] == expected_errors(path)
    assert info.value.exit_code == 2
    assert str(info.value) == "\n".join(expected_errors(path))


def test_cluster_plan_structure():
    plan = load_plan("good/cluster.yml")
    assert plan.name == "cluster"
    assert plan.path == (PLANS / "good/cluster.yml").resolve()
    assert list(plan.services) == ["head", "compute", "authorize", "gateway"]
    assert plan.vars == {"compute_count": 2, "export_dir": "/srv/share"}

    head = plan.services["head"]
    assert head.clouds == [CloudPlacement("local", -1)]
    assert (head.image, head.size, head.ssh_user, head.count) == ("debian-12", "small", "root", 1)
    assert head.exports == ["export_dir"]
    assert head.timeout == 600.0 and head.lifetime == 7200.0
    assert head.scripts["boot"].path == (PLANS / "scripts/server-boot.sh.j2").resolve()
    assert "mkdir -p" in head.scripts["boot"].source
    assert str(head.pos) == "good/cluster.yml:16"
    assert str(head.pos_of("image")) == "good/cluster.yml:10"  # inherited from defaults

    compute = plan.services["compute"]
    assert compute.count == 2  # rendered from vars
    assert compute.clouds == [CloudPlacement("hotel", 1), CloudPlacement("local", -1)]
    assert compute.env == {"GREETING": "hello", "ROLE": "compute", "DEBUG": "true"}
    assert compute.spot == {"max_price": 0.05, "fallback": "on-demand"}
    assert compute.options == {"security_groups": ["default"]}
    assert compute.lifetime is None

    authorize = plan.services["authorize"]
    assert authorize.host == "head" and not authorize.launches
    assert authorize.clouds == [] and authorize.image is None  # defaults for launching skipped
    assert authorize.after == ["compute"]

    gateway = plan.services["gateway"]
    assert (gateway.host, gateway.ssh_user, gateway.ssh_port) == ("192.0.2.77", "admin", 2222)
    assert gateway.ssh_key == (PLANS / "good/keys/id_test").resolve()
    assert gateway.scripts["ready"].ref == "../scripts/plain.sh"

    assert plan.clouds["hotel"] == CloudSpec(
        "hotel",
        "ec2",
        {
            "endpoint": "https://hotel.example/",
            "region": "nimbus",
            "credentials": {"profile": "hotel"},
        },
        plan.clouds["hotel"].pos,
    )
    assert plan.clouds["local"].provider == "local" and plan.clouds["qemu"].provider == "qemu"


def test_var_overrides_are_yaml_scalars_and_change_count():
    plan = load_plan("good/cluster.yml", overrides={"compute_count": "4", "export_dir": "/x y"})
    assert plan.services["compute"].count == 4
    assert plan.vars["compute_count"] == 4
    assert plan.vars["export_dir"] == "/x y"


def test_var_override_of_an_undeclared_var_is_refused_with_did_you_mean():
    with pytest.raises(PlanErrors) as info:
        load_plan("good/cluster.yml", overrides={"compute_cont": "4"})
    assert [str(e) for e in info.value.errors] == [
        "good/cluster.yml:2: --var compute_cont: the plan has no var 'compute_cont'"
        " (did you mean 'compute_count'?)"
    ]
    # The vars the engine itself reads (the home share) need no declaration.
    assert load_plan("good/cluster.yml", overrides={"home_host": "10.0.0.1"}).vars["home_host"]


@pytest.mark.parametrize(
    "text, value",
    [
        ("4", 4),
        ("2.5", 2.5),
        ("true", True),
        ("abc", "abc"),
        ("", ""),
        ("[1, 2]", "[1, 2]"),
        ("a: b", "a: b"),
        ("'quoted'", "quoted"),
    ],
)
def test_parse_override(text, value):
    assert parse_override(text) == value


def write(tmp_path: Path, text: str, name: str = "plan.yml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_catalog_clouds_are_used_and_plan_clouds_override_them(tmp_path):
    catalog = {
        "hotel": CloudSpec("hotel", "ec2", {"region": "catalog"}),
        "sierra": CloudSpec("sierra", "ec2", {"region": "s"}),
    }
    path = write(
        tmp_path,
        """
clouds: {hotel: {provider: ec2, region: plan}}
services:
  a: {cloud: hotel}
  b: {cloud: sierra}
""",
    )
    plan = load_plan(path, catalog=catalog)
    assert plan.clouds["hotel"].options == {"region": "plan"}
    assert plan.clouds["sierra"].options == {"region": "s"}
    assert plan.name == tmp_path.name  # plan.yml: named after its folder


def test_default_cloud_is_defaults_cloud_else_local(tmp_path):
    plan = load_plan(write(tmp_path, "services: {a: {}}\n", "x.yml"))
    assert plan.services["a"].clouds == [CloudPlacement("local", -1)]
    assert plan.name == "x"
    plan = load_plan(write(tmp_path, "defaults: {cloud: qemu}\nservices: {a: {}}\n"))
    assert plan.services["a"].clouds == [CloudPlacement("qemu", -1)]


def test_service_on_another_service_host_logs_in_as_that_service(tmp_path):
    path = write(
        tmp_path,
        """
services:
  head: {ssh_user: debian, ssh_port: 2200}
  extra: {host: head}
  own: {host: head, ssh_user: admin}
""",
    )
    plan = load_plan(path)
    assert (plan.services["extra"].ssh_user, plan.services["extra"].ssh_port) == ("debian", 2200)
    assert plan.services["own"].ssh_user == "admin"


def test_host_on_multi_instance_service_is_an_error(tmp_path):
    path = write(tmp_path, "services:\n  c: {count: 2}\n  x:\n    host: c\n")
    with pytest.raises(PlanErrors) as info:
        load_plan(path)
    assert str(info.value).endswith(
        "plan.yml:4: service 'x': host 'c' has 2 instances; host: needs a one-instance service"
    )


def test_plan_lifetime_applies_to_launched_services(tmp_path):
    path = write(tmp_path, "lifetime: 2h\nservices:\n  a: {}\n  b: {lifetime: 30m}\n")
    plan = load_plan(path)
    assert plan.lifetime == 7200.0
    assert plan.services["a"].lifetime == 7200.0
    assert plan.services["b"].lifetime == 1800.0


def test_script_found_in_bootlevels_library(tmp_path):
    library = shipped_dir("bootlevels")
    role = library / "zz-test-loader-role"
    role.mkdir(parents=True)
    try:
        (role / "boot.sh.j2").write_text("echo {{ self.name }}\n")
        plan = load_plan(write(tmp_path, "services: {a: {boot: zz-test-loader-role/boot.sh.j2}}\n"))
        assert plan.services["a"].scripts["boot"].path == (role / "boot.sh.j2").resolve()
        # The plan's own folder wins over the library.
        (tmp_path / "zz-test-loader-role").mkdir()
        (tmp_path / "zz-test-loader-role/boot.sh.j2").write_text("echo mine\n")
        plan = load_plan(tmp_path / "plan.yml")
        assert plan.services["a"].scripts["boot"].source == "echo mine\n"
    finally:
        (role / "boot.sh.j2").unlink()
        role.rmdir()


def test_missing_plan_file_is_one_line_error(tmp_path):
    with pytest.raises(PlanErrors) as info:
        load_plan(tmp_path / "nope.yml")
    assert str(info.value) == f"{tmp_path / 'nope.yml'}: cannot read plan: no such file"


def test_empty_plan_is_an_error(tmp_path):
    with pytest.raises(PlanErrors) as info:
        load_plan(write(tmp_path, "# nothing\n"))
    assert "a plan must be a mapping" in str(info.value)


# -- paths -----------------------------------------------------------------


def test_cloudinitd_home(monkeypatch, tmp_path):
    monkeypatch.setenv("CLOUDINITD_HOME", str(tmp_path / "h"))
    assert cloudinitd_home() == tmp_path / "h"
    monkeypatch.delenv("CLOUDINITD_HOME")
    assert cloudinitd_home() == Path.home() / ".cloudinitd"


def test_shipped_dirs_are_the_checkout_folders():
    root = Path(__file__).resolve().parents[1]
    assert shipped_dir("plans") == root / "plans"
    assert shipped_dir("bootlevels") == root / "bootlevels"
    with pytest.raises(ValueError):
        shipped_dir("etc")


def test_find_plan(tmp_path):
    plan = write(tmp_path, "services: {a: {}}\n")
    assert find_plan(plan) == plan
    assert find_plan(tmp_path) == plan
    shipped = shipped_dir("plans") / "zz-test-find-plan"
    shipped.mkdir(parents=True)
    try:
        (shipped / "plan.yml").write_text("services: {a: {}}\n")
        assert find_plan("zz-test-find-plan") == shipped / "plan.yml"
        assert display_path(shipped / "plan.yml") == "plans/zz-test-find-plan/plan.yml"
    finally:
        (shipped / "plan.yml").unlink()
        shipped.rmdir()
    with pytest.raises(UsageError, match="no plan 'no-such-plan'"):
        find_plan("no-such-plan")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="folder has no plan.yml"):
        find_plan(tmp_path / "empty")


def test_empty_sections_and_services_mean_defaults(tmp_path):
    plan = load_plan(write(tmp_path, "vars:\ndefaults:\nservices:\n  a:\n  b: {after: [a]}\n"))
    assert plan.vars == {}
    assert plan.services["a"].clouds == [CloudPlacement("local", -1)]
    assert plan.services["b"].after == ["a"]


def _load_errors(tmp_path: Path, data: bytes, scripts: dict[str, bytes] | None = None,
                 **kwargs) -> list[str]:
    for name, body in (scripts or {}).items():
        (tmp_path / name).write_bytes(body)
    (tmp_path / "plan.yml").write_bytes(data)
    with pytest.raises(PlanErrors) as info:
        load_plan(tmp_path / "plan.yml", **kwargs)
    return [str(e).replace(f"{tmp_path}/", "") for e in info.value.errors]


@pytest.mark.parametrize("data, expected", [
    (b"services:\n  a: {}\n  b: \x00\n",
     "plan.yml:3: bad YAML: character U+0000 is not allowed in YAML (column 6)"),
    (b"services:\n  a: {}\n  b: '\x1b[31m'\n",
     "plan.yml:3: bad YAML: character U+001B is not allowed in YAML (column 7)"),
    (b"services:\n  a:\n    image: d\xc3\xa9b \xff\n",
     "plan.yml:3: not UTF-8: byte 0xff at line 3, column 16"),
    # U+2028 is a line break to PyYAML but not to editors: line numbers must not shift.
    ("x: '\u2028\u2028'\nservices:\n  a:\n    nope: 1\n".encode(),
     "plan.yml:1: unknown key 'x' (known: clouds, defaults, lifetime, name, outputs, preserve, services, vars)"),
    (b"services:\n  a:\n    host: \"a\\nb\"\n",
     "plan.yml:3: service 'a': host 'a\\nb' is not an address or a service name"),
    (b"services: " + b"[" * 10_000, "plan.yml:1: bad YAML: nested more than 100 levels deep"),
    (b"vars:\n  a: &a [1, *a]\nservices: {a: {}}\n",
     "plan.yml:2: bad YAML: an alias refers to the value that contains it"),
])
def test_bad_bytes_and_shapes_give_one_located_line(tmp_path, data, expected):
    errors = _load_errors(tmp_path, data)
    assert errors[0] == expected
    assert all("\n" not in e and "\u2028" not in e for e in errors)


def test_u2028_does_not_shift_later_lines(tmp_path):
    errors = _load_errors(tmp_path, "vars:\n  a: '\u2028\u2028\u2028'\nservices:\n  a:\n"
                                    "    nope: 1\n".encode())
    assert errors[0].startswith("plan.yml:5: unknown key 'nope'")


def test_billion_laughs_is_refused_quickly_at_its_line(tmp_path):
    rows = ["  l0: &l0 [" + ", ".join(["lol"] * 9) + "]"]
    rows += [f"  l{d}: &l{d} [" + ", ".join([f"*l{d - 1}"] * 9) + "]" for d in range(1, 9)]
    data = ("vars:\n" + "\n".join(rows) + "\nservices: {a: {}}\n").encode()
    errors = _load_errors(tmp_path, data)
    # l5 is the first list whose expansion passes 200000 values (9**6 > 200000 > 9**5).
    assert errors == ["plan.yml:7: bad YAML: too many values once aliases are expanded"
                      " (more than 200000)"]


def test_plan_and_script_size_limits(tmp_path):
    big = b"services: {a: {}}\n" + b"#" * (300 * 1024) + b"\n"
    assert _load_errors(tmp_path, big) == ["plan.yml:1: file is larger than the limit of 256 KiB"]
    errors = _load_errors(tmp_path, b"services:\n  a: {boot: s.sh}\n",
                          {"s.sh": b"echo x\n" * 100_000})
    assert errors == ["s.sh:1: file is larger than the limit of 512 KiB"]


def test_script_problems_are_located(tmp_path):
    long = "x" * 300
    assert _load_errors(tmp_path, f"services:\n  a:\n    boot: {long}.sh\n".encode()) == [
        "plan.yml:3: service 'a': bad boot script path: File name too long"]
    errors = _load_errors(tmp_path, b"services:\n  a:\n    boot: s.sh\n",
                          {"s.sh": b"#!/bin/sh\necho \xc3\n"})
    assert errors == ["s.sh:2: not UTF-8: byte 0xc3 at line 2, column 6"]


def test_count_limits_per_service_and_per_run_and_override(tmp_path):
    from cloudinitd.plan.limits import Limits

    assert _load_errors(tmp_path, b"services:\n  a:\n    count: 1000000000\n") == [
        "plan.yml:3: service 'a': count 1000000000 is above the limit of 1000 instances per"
        " service (see --max-instances)"]
    three = b"services:\n" + b"".join(b"  s%d: {count: 900}\n" % i for i in range(3))
    assert _load_errors(tmp_path, three) == [
        "plan.yml:1: the plan launches 2700 instances, above the limit of 2000 per run"
        " (see --max-instances)"]
    plan = load_plan(tmp_path / "plan.yml", limits=Limits.from_env(3000))
    assert sum(s.count for s in plan.services.values()) == 2700
    assert _load_errors(tmp_path, b"services:\n  a: {count: \"{{ 10 ** 12 }}\"}\n") == [
        "plan.yml:2: service 'a': count 1000000000000 is above the limit of 1000 instances per"
        " service (see --max-instances)"]


def test_templated_host_is_rendered_from_vars_at_load_time(tmp_path):
    (tmp_path / "plan.yml").write_text(
        "vars: {addr: 127.0.0.9}\nservices:\n  a:\n    host: \"{{ vars.addr }}\"\n")
    assert load_plan(tmp_path / "plan.yml").services["a"].host == "127.0.0.9"
    plan = load_plan(tmp_path / "plan.yml", overrides={"addr": "127.0.0.7"})
    assert plan.services["a"].host == "127.0.0.7"
    assert _load_errors(tmp_path, b"services:\n  a:\n    host: \"{{ self.address }}\"\n") == [
        "plan.yml:3: service 'a': host: undefined 'self'"]
    assert _load_errors(tmp_path, b"vars: {h: 'a b'}\nservices:\n  a:\n"
                                  b"    host: \"{{ vars.h }}\"\n") == [
        "plan.yml:4: service 'a': host renders to 'a b', not an address or a service name"]


def test_sandbox_escape_in_count_runs_nothing(tmp_path):
    marker = tmp_path / "X"
    payload = f"{{{{ cycler.__init__.__globals__.os.system('touch {marker}') }}}}"
    errors = _load_errors(tmp_path, f"services:\n  a:\n    count: \"{payload}\"\n".encode())
    assert errors == ["plan.yml:3: service 'a': count: not allowed in a template: access to"
                      " attribute '__init__' of 'type' object is unsafe"]
    assert not marker.exists()


def test_derived_plan_names_fit_run_names(tmp_path):
    path = tmp_path / "my plan;x.yml"
    path.write_text("services: {a: {}}\n")
    assert load_plan(path).name == "my-plan-x"


@pytest.mark.parametrize(("file", "name"), [
    ("plan.yml", "folder-name"), ("plan.yaml", "folder-name"), ("other.yaml", "other"),
    ("Plan.yml", "Plan"),
])
def test_a_plan_without_name_is_named_after_its_file_or_folder(tmp_path, file, name):
    (tmp_path / "folder name").mkdir()
    path = write(tmp_path / "folder name", "services: {a: {}}\n", file)
    assert load_plan(path).name == name
    assert load_plan(write(tmp_path, "name: given\nservices: {a: {}}\n", file)).name == "given"


@pytest.mark.parametrize(("text", "overrides", "expected"), [
    ("# a comment\n\nvars: {beta: 1, alpha: 2}\nservices: {a: {}}\n", {"zzz": "1"},
     "plan.yml:3: --var zzz: the plan has no var 'zzz' (its vars: alpha, beta)"),
    ("vars: {beta: 1}\nservices: {a: {}}\n", {"betta": "1"},
     "plan.yml:1: --var betta: the plan has no var 'betta' (did you mean 'beta'?)"),
    # No vars: the error is at the top of the file, not at the first key.
    ("# a comment\n\nservices: {a: {}}\n", {"zzz": "1"},
     "plan.yml:1: --var zzz: the plan has no var 'zzz' (it has no vars)"),
    ("# a comment\n\nvars:\nservices: {a: {}}\n", {"zzz": "1"},
     "plan.yml:3: --var zzz: the plan has no var 'zzz' (it has no vars)"),
])
def test_var_overrides_of_undeclared_vars(tmp_path, text, overrides, expected):
    errors = _load_errors(tmp_path, text.encode(), overrides=overrides)
    assert errors == [expected]


def test_engine_vars_need_no_declaration_but_others_do(tmp_path):
    path = write(tmp_path, "services: {a: {}}\n")
    plan = load_plan(path, overrides={"home_host": "10.0.0.1", "home_port": "2222"})
    assert plan.vars == {"home_host": "10.0.0.1", "home_port": 2222}
    errors = _load_errors(tmp_path, b"services: {a: {}}\n", overrides={"home_hostx": "1"})
    assert errors == ["plan.yml:1: --var home_hostx: the plan has no var 'home_hostx'"
                      " (it has no vars)"]


def test_two_undeclared_vars_are_both_reported(tmp_path):
    errors = _load_errors(tmp_path, b"vars: {a: 1}\nservices: {s: {}}\n",
                          overrides={"x": "1", "a": "2", "y": "3"})
    assert errors == ["plan.yml:1: --var x: the plan has no var 'x' (its vars: a)",
                      "plan.yml:1: --var y: the plan has no var 'y' (its vars: a)"]


def test_clouds_built_in_catalog_and_plan_entries(tmp_path):
    plan = load_plan(write(tmp_path, "clouds:\n  c: {provider: ec2, region: r}\n"
                                     "  d: {provider: ec2, region: r}\n"
                                     "services: {a: {cloud: c}}\n"))
    assert plan.clouds["d"].pos == Pos(str(tmp_path / "plan.yml"), 3)
    assert plan.clouds["local"] == CloudSpec("local", "local")
    assert plan.clouds["qemu"] == CloudSpec("qemu", "qemu")
    assert (plan.clouds["c"].name, plan.clouds["c"].provider) == ("c", "ec2")
    assert plan.clouds["c"].pos == Pos(str(tmp_path / "plan.yml"), 2)
    errors = _load_errors(tmp_path, b"services: {a: {cloud: c}}\nclouds:\n  b: {provider: ec2}\n"
                                    b"  c:\n    provider: ec2\n    regoin: x\n  d:\n    provider: nope\n")
    # A refused entry is reported once, at its own line; the service naming it gets no error.
    assert errors == ["plan.yml:6: cloud 'c': unknown key 'regoin' (did you mean 'region'?)",
                      "plan.yml:8: cloud 'd': unknown provider 'nope' (known: ec2, local, qemu,"
                      " static)"]


@pytest.mark.parametrize(("text", "expected"), [
    (b"services: {a: {}}\n\nlifetime: 0s\n",
     "plan.yml:3: lifetime: a duration must be more than 0 seconds, got '0s'"),
    (b"services: {a: {}}\nlifetime: 1 2\n",
     "plan.yml:2: lifetime: not a duration: '1 2' (use seconds, or e.g. 30s, 20m, 2h, 1h30m)"),
    (b"services:\n  a:\n    timeout: 0m\n",
     "plan.yml:3: service 'a': timeout: a duration must be more than 0 seconds, got '0m'"),
    (b"services:\n  a:\n    image: x\n    lifetime: 1 2\n",
     "plan.yml:4: service 'a': lifetime: not a duration: '1 2' (use seconds, or e.g. 30s, 20m,"
     " 2h, 1h30m)"),
])
def test_durations_the_schema_lets_through_are_checked_at_their_line(tmp_path, text, expected):
    assert _load_errors(tmp_path, text) == [expected]


def test_host_ssh_settings_follow_a_chain_of_hosts(tmp_path):
    # `top` is on `mid`'s machine, which is `base`'s: it logs in as `mid` does (mid's own
    # user, base's port and key). The walk up the chain used to end with base's user.
    (tmp_path / "k").write_text("key\n")
    path = write(tmp_path, """
defaults: {ssh_user: admin}
services:
  early: {host: mid}
  base: {ssh_user: debian, ssh_port: 2200, ssh_key: k}
  mid: {host: base, ssh_user: mid}
  top: {host: mid}
  own: {host: top, ssh_port: 22, ssh_key: /keys/own}
  fixed:
    hosts: ["10.0.0.1:2022"]
    ssh_user: ops
  on_fixed: {host: fixed}
  other: {host: 10.0.0.9}
""")
    s = load_plan(path).services
    assert (s["mid"].ssh_user, s["mid"].ssh_port, s["mid"].ssh_key) == ("mid", 2200,
                                                                       tmp_path / "k")
    assert (s["top"].ssh_user, s["top"].ssh_port, s["top"].ssh_key) == ("mid", 2200,
                                                                       tmp_path / "k")
    # Listed before `mid`, so found before mid's own settings were filled in.
    assert (s["early"].ssh_user, s["early"].ssh_port) == ("mid", 2200)
    assert (s["own"].ssh_user, s["own"].ssh_port) == ("mid", 22)
    assert str(s["own"].ssh_key) == "/keys/own"
    assert (s["on_fixed"].ssh_user, s["on_fixed"].ssh_port) == ("ops", 2022)
    assert (s["other"].ssh_user, s["other"].ssh_port, s["other"].ssh_key) == ("admin", 22, None)
    # An inherited setting is shown at the service it comes from, not at the service.
    assert "ssh_user" not in s["top"].field_pos and s["own"].field_pos["ssh_port"].line == 8
    assert s["other"].field_pos["ssh_user"].line == 2  # from defaults, on no service's machine


def test_host_needs_a_one_instance_service(tmp_path):
    errors = _load_errors(tmp_path, b"""services:
  c: {count: 2}
  h:
    hosts: [10.0.0.1, 10.0.0.2]
  z: {count: 0}
  x: {host: c}
  y:
    host: h
  w: {host: z}
""")
    assert errors == [
        "plan.yml:6: service 'x': host 'c' has 2 instances; host: needs a one-instance service",
        "plan.yml:8: service 'y': host 'h' has 2 instances; host: needs a one-instance service",
        "plan.yml:9: service 'w': host 'z' has 0 instances; host: needs a one-instance service",
    ]


def test_plan_level_lifetime_and_preserve_reach_launched_services_only(tmp_path):
    path = write(tmp_path, """
lifetime: 2h
preserve: true
services:
  a: {}
  b: {lifetime: 10m, preserve: false}
  c: {host: a}
""")
    plan = load_plan(path)
    s = plan.services
    assert (plan.lifetime, plan.preserve) == (7200.0, True)
    assert (s["a"].lifetime, s["a"].preserve) == (7200.0, True)
    assert (s["b"].lifetime, s["b"].preserve) == (600.0, False)
    assert (s["c"].lifetime, s["c"].preserve) == (None, False)
    plan = load_plan(write(tmp_path, "services: {a: {}}\n"))
    assert (plan.lifetime, plan.preserve, plan.services["a"].lifetime) == (None, False, None)


def test_the_run_limit_counts_launched_instances(tmp_path):
    text = b"services:\n  a: {count: 2}\n  b: {count: 1}\n  c: {host: 10.0.0.1}\n"
    (tmp_path / "plan.yml").write_bytes(text)
    assert len(load_plan(tmp_path / "plan.yml", limits=Limits(per_run=3)).services) == 3
    errors = _load_errors(tmp_path, b"name: x\n" + text, limits=Limits(per_run=2))
    assert errors == ["plan.yml:2: the plan launches 3 instances, above the limit of 2 per run"
                      " (see --max-instances)"]


@pytest.mark.parametrize(("data", "expected"), [
    (b"- a\n", "plan.yml:1: a plan must be a mapping with at least a 'services' key"),
    (b"services: {a: {}}\nservices: {}\n", "plan.yml:2: duplicate key 'services' (first at line 1)"),
])
def test_plans_that_are_not_plans(tmp_path, data, expected):
    assert _load_errors(tmp_path, data) == [expected]


def test_a_plan_folder_or_unreadable_plan_is_one_error(tmp_path):
    (tmp_path / "dir.yml").mkdir()
    with pytest.raises(PlanErrors) as info:
        load_plan(tmp_path / "dir.yml")
    assert str(info.value) == \
        f"{tmp_path / 'dir.yml'}: cannot read plan: it is a folder, not a file"
    os.mkfifo(tmp_path / "fifo.yml")  # opened by name, it would wait for a writer forever
    with pytest.raises(PlanErrors) as info:
        within(20, load_plan, tmp_path / "fifo.yml")
    assert str(info.value) == \
        f"{tmp_path / 'fifo.yml'}: cannot read plan: it is not a regular file"
    (tmp_path / "big.yml").write_text("services: {a: {}}\n" + "#" * 300_000)
    with pytest.raises(PlanErrors) as info:
        load_plan(tmp_path / "big.yml")
    assert str(info.value) == f"{tmp_path / 'big.yml'}:1: file is larger than the limit of 256 KiB"


def test_errors_of_every_stage_come_sorted_by_line(tmp_path):
    errors = _load_errors(tmp_path, b"""services:
  b:
    host: b
  a:
    cloud: nowhere
    count: 2000
""")
    assert errors == [
        "plan.yml:3: service 'b': host cannot be the service itself",
        "plan.yml:5: service 'a': unknown cloud 'nowhere' (known: local, qemu)",
        "plan.yml:6: service 'a': count 2000 is above the limit of 1000 instances per service"
        " (see --max-instances)",
    ]


def test_the_limits_come_from_the_environment_when_not_given(tmp_path, monkeypatch):
    monkeypatch.setenv("CLOUDINITD_MAX_INSTANCES", "2")
    errors = _load_errors(tmp_path, b"services:\n  a: {count: 3}\n")
    assert errors == ["plan.yml:2: service 'a': count 3 is above the limit of 2 instances per"
                      " service (see --max-instances)"]


def test_a_cycle_of_hosts_is_reported_not_followed_forever(tmp_path):
    errors = _load_errors(tmp_path, b"services:\n  a: {host: b}\n  b: {host: c}\n"
                                    b"  c: {host: b}\n")
    assert errors == ["plan.yml:3: dependency cycle: b -> c -> b (each service needs the next)"]


def test_a_plan_path_that_cannot_be_opened_says_why(tmp_path):
    # A path from a request may hold a NUL byte: one line, exit 2 (it used to be a traceback).
    with pytest.raises(PlanErrors) as info:
        load_plan(tmp_path / "a\0b.yml")
    assert str(info.value) == \
        f"{tmp_path}/a\\x00b.yml: cannot read plan: it cannot be used: embedded null byte"
    assert info.value.exit_code == 2


def test_a_script_by_absolute_path(tmp_path, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("scripts") / "b.sh"
    elsewhere.write_text("echo\n")
    plan = load_plan(write(tmp_path, f"services:\n  a:\n    boot: {elsewhere}\n"))
    assert plan.services["a"].scripts["boot"].path == elsewhere
