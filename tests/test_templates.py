"""Rendering scripts and env values: context, shell quoting, strict errors, dry-run world."""

from __future__ import annotations

import copy
import ipaddress
import re
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloudinitd.errors import PlanError, PlanErrors
from cloudinitd.plan.loader import load_plan
from cloudinitd.plan.model import ScriptSpec
from cloudinitd.templates import (
    is_shell_script,
    placeholder_extra,
    placeholder_world,
    render_script,
    render_value,
)

PLANS = Path(__file__).parent / "plans"
NASTY = [
    "'; rm -rf /; '",
    "$(echo pwned > pwned.txt) `echo pwned > pwned.txt` ${HOME}",
    "; echo pwned > pwned.txt",
    'two\nlines "and" \\ back\\slash',
    "",
    "*",
    "-n",
]


@pytest.fixture(autouse=True)
def in_plans(monkeypatch):
    monkeypatch.chdir(PLANS)


@pytest.fixture()
def plan():
    return load_plan("good/render.yml")


def world_with(plan, **head_attrs):
    world = placeholder_world(plan)
    world["head"][0].update(head_attrs)
    return world


def inline(plan, text: str, name: str = "t.sh.j2") -> ScriptSpec:
    return ScriptSpec(ref=name, path=PLANS / "scripts" / name, source=text)


def render(plan, text, world=None, name="t.sh.j2", service="compute", index=0, extra=None):
    return render_script(
        inline(plan, text, name),
        plan=plan,
        run="r1",
        service=service,
        index=index,
        world=world or placeholder_world(plan),
        extra=extra,
    )


@pytest.mark.parametrize("value", NASTY, ids=range(len(NASTY)))
def test_values_are_shell_quoted_so_sh_echoes_them_back(plan, value, tmp_path):
    script = plan.services["compute"].scripts["terminate"]
    text = render_script(
        script, plan=plan, run="r1", service="compute", index=0, world=world_with(plan, motd=value)
    )
    command = text.split("\n", 1)[1]  # after the #! line
    # printf, not echo: echo would take "-n" as an option.
    command = command.replace("echo ", "printf '%s\\n' ", 1)
    # PATH holds nothing, so even if quoting ever broke no external program
    # (rm!) could run; the builtins-only payloads would leave pwned.txt.
    out = subprocess.run(
        ["/bin/sh", "-c", command],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PATH": str(tmp_path)},
        check=True,
    )
    assert out.stdout == value + "\n"
    assert not (tmp_path / "pwned.txt").exists()


def test_an_unquoted_value_would_be_caught(plan, tmp_path):
    # The check above can fail: the same payload marked |safe does run.
    world = world_with(plan, motd="; echo pwned > pwned.txt")
    command = render(plan, "printf '%s\\n' {{ head.motd | safe }}", world)
    subprocess.run(
        ["/bin/sh", "-c", command],
        cwd=tmp_path,
        env={"PATH": str(tmp_path)},
        check=True,
        capture_output=True,
    )
    assert (tmp_path / "pwned.txt").exists()


def test_plain_words_and_numbers_stay_unquoted_and_safe_marks_raw(plan):
    text = render(
        plan,
        "a={{ self.index }} b={{ head.address }} c={{ vars.n }} "
        "d={{ vars.greeting }} e={{ vars.cmd | safe }} f={{ vars.greeting | shquote }}\n",
    )
    assert text == "a=0 b=192.0.2.1 c=3 d='hello world' e=ls -l | wc -l f='hello world'\n"


def test_non_shell_templates_render_raw_and_shquote_still_works(plan):
    script = plan.services["compute"].scripts["ready"]
    text = render_script(
        script,
        plan=plan,
        run="r1",
        service="compute",
        index=0,
        world=world_with(plan, export_dir="/srv/my share"),
    )
    assert text == "PATH = \"/srv/my share\"\nQUOTED = '/srv/my share'\n"


@pytest.mark.parametrize(
    "name, shell",
    [
        ("boot.sh.j2", True),
        ("boot.j2", True),
        ("boot", True),
        ("run.bash.j2", True),
        ("conf.py.j2", False),
        ("x.yml.j2", False),
    ],
)
def test_which_templates_are_shell(name, shell):
    assert is_shell_script(name) is shell


def test_context_self_run_env_and_services(plan):
    world = placeholder_world(plan)
    text = render(
        plan,
        "{{ run }} {{ self.name }}-{{ self.index }} {{ self.count }} "
        "{{ self.instances | length }} {{ head.count }} {{ env.WHO }} {{ env.HEAD }}"
        "{% for h in head.instances %} {{ h.hostname }}{% endfor %}\n",
        world,
    )
    assert text == "r1 compute-0 1 1 1 compute-0 192.0.2.1 head-0\n"


def test_trailing_newline_is_kept(plan):
    assert render(plan, "echo hi\n") == "echo hi\n"
    assert render(plan, "echo hi") == "echo hi"


def test_undefined_attribute_at_render_names_file_line_variable_and_service(plan):
    world = placeholder_world(plan)
    del world["head"][0]["export_dir"]  # head's boot script did not export it
    script = plan.services["compute"].scripts["boot"]
    with pytest.raises(PlanError) as info:
        render_script(script, plan=plan, run="r1", service="compute", index=0, world=world)
    assert str(info.value) == (
        "scripts/needs-export.sh.j2:3: undefined 'head.export_dir' while rendering service 'compute'"
    )
    assert info.value.exit_code == 2


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "ok\n{{ nobody }}\n",
            "scripts/t.sh.j2:2: undefined 'nobody' while rendering service 'compute'",
        ),
        (
            "{{ vars.nope }}",
            "scripts/t.sh.j2:1: undefined 'vars.nope' while rendering service 'compute'",
        ),
        (
            "{{ self.nope }}",
            "scripts/t.sh.j2:1: undefined 'self.nope' while rendering service 'compute'",
        ),
        (
            "{{ head.instances[3].address }}",
            "scripts/t.sh.j2:1: undefined 'head.instances[3]' while rendering service 'compute'",
        ),
        (
            "\n\n{{ 1 / 0 }}",
            "scripts/t.sh.j2:3: ZeroDivisionError: division by zero while rendering service 'compute'",
        ),
        (
            "{% if %}",
            "scripts/t.sh.j2:1: Expected an expression, got 'end of statement block' while rendering service 'compute'",
        ),
        (
            "{{ head }}",
            "scripts/t.sh.j2:1: 'head' is a service, not a value: use head.address or another "
            "attribute while rendering service 'compute'",
        ),
    ],
)
def test_strict_errors(plan, text, message):
    with pytest.raises(PlanError) as info:
        render(plan, text)
    assert str(info.value) == message


def test_direct_attribute_of_multi_instance_service_says_use_instances(plan):
    world = placeholder_world(plan)
    world["compute"].append({**world["compute"][0], "index": 1, "address": "192.0.2.99"})  # scaled
    with pytest.raises(PlanError) as info:
        render(plan, "echo {{ compute.address }}", world, service="head")
    assert str(info.value) == (
        "scripts/t.sh.j2:1: service 'compute' has 2 instances: use compute.instances (e.g. "
        "{% for i in compute.instances %}{{ i.address }}{% endfor %}), not compute.address "
        "while rendering service 'head'"
    )
    text = "{% for c in compute.instances %}{{ c.address }} {% endfor %}"
    assert render(plan, text, world, service="head") == "192.0.2.2 192.0.2.99 "


def test_render_value_is_raw_and_errors_carry_where(plan):
    world = world_with(plan, motd="a b; c")
    kwargs = dict(plan=plan, run="r1", service="compute", index=0, world=world)
    assert render_value("{{ head.motd }}!", where="good/render.yml:10", **kwargs) == "a b; c!"
    with pytest.raises(PlanError) as info:
        render_value("{{ head.nothing }}", where="good/render.yml:10", **kwargs)
    assert str(info.value) == (
        "good/render.yml:10: undefined 'head.nothing' while rendering env of service 'compute'"
    )


def test_plain_scripts_are_sent_verbatim(plan):
    assert render(plan, "echo ${#} {{ x }}", name="t.sh") == "echo ${#} {{ x }}"


def test_placeholder_world_renders_every_script_of_every_plan_here():
    for path in sorted((PLANS / "good").glob("*.yml")):
        plan = load_plan(path)
        world = placeholder_world(plan)
        assert set(world) == set(plan.services)
        for name, spec in plan.services.items():
            for i, attrs in enumerate(world[name]):
                assert (
                    ipaddress.ip_address(attrs["address"]) in ipaddress.ip_network("192.0.2.0/24")
                    or attrs["address"] == spec.host
                )
                for script in spec.scripts.values():
                    assert render_script(
                        script, plan=plan, run="dry", service=spec, index=i, world=world
                    )


def test_placeholder_world_shape():
    plan = load_plan("good/cluster.yml")
    world = placeholder_world(plan)
    assert [len(world[s]) for s in ("head", "compute", "authorize", "gateway")] == [1, 2, 1, 1]
    head, c1 = world["head"][0], world["compute"][1]
    assert head["export_dir"] == "<head.export_dir>"
    assert c1 == {
        "address": c1["address"],
        "private_address": c1["address"],
        "hostname": "compute-1",
        "instance_id": "dry-run-compute-1",
        "cloud": "hotel",
        "index": 1,
        "name": "compute",
    }
    assert (
        len({world[s][i]["address"] for s in ("head", "compute") for i in range(len(world[s]))})
        == 3
    )
    # a service on head's machine has head's address but its own name
    assert world["authorize"][0]["address"] == head["address"]
    assert world["authorize"][0]["name"] == "authorize"
    assert world["gateway"][0]["address"] == "192.0.2.77"


def test_placeholder_addresses_run_past_one_test_net():
    plan = load_plan("good/cluster.yml", overrides={"compute_count": "300"})
    addresses = [a["address"] for a in placeholder_world(plan)["compute"]]
    assert len(set(addresses)) == 300
    assert all(ipaddress.ip_address(a).is_private for a in addresses)  # documentation ranges


def test_script_path_in_messages_uses_display_path(plan):
    spec = replace(plan.services["compute"].scripts["boot"], source="{{ nope }}")
    with pytest.raises(PlanError, match=r"^scripts/needs-export\.sh\.j2:1: undefined 'nope'"):
        render_script(
            spec, plan=plan, run="r", service="compute", index=0, world=placeholder_world(plan)
        )


def test_index_is_the_replica_index_not_the_list_position(plan):
    world = placeholder_world(plan)
    c0 = world["compute"][0]
    world["compute"] = [
        {**c0, "index": 2, "hostname": "compute-2"},
        {**c0, "index": 5, "hostname": "compute-5"},
    ]
    assert render(plan, "{{ self.hostname }} {{ self.count }}", world, index=5) == "compute-5 2"
    with pytest.raises(PlanError, match="service 'compute' has no instance 0 to render for"):
        render(plan, "x", world, index=0)


def test_extra_context_home_is_rendered_and_quoted(plan):
    home = {
        "host": "10.177.0.1",
        "port": 2222,
        "user": "me",
        "dir": "/home/my files",
        "key": "-----BEGIN KEY-----\nabc\n",
        "known_host": "[10.177.0.1]:2222 ssh-ed25519 AAA",
    }
    text = render(
        plan,
        "{{ home.user }}@{{ home.host }}:{{ home.dir }} -p {{ home.port }}",
        extra={"home": home},
    )
    assert text == "me@10.177.0.1:'/home/my files' -p 2222"
    with pytest.raises(PlanError, match=r"undefined 'home.dirr'"):
        render(plan, "{{ home.dirr }}", extra={"home": home})
    with pytest.raises(PlanError, match=r"undefined 'home'"):
        render(plan, "{{ home.dir }}")  # a run that did not set up the home share
    assert render(plan, "{{ home.host }}", extra=placeholder_extra()) == "192.0.2.254"


# Payloads with no space or quote in them: quoting must not depend on whitespace.
NO_SPACE = ["$(id)", "`id`", "a;b", "a|b", ">f", "*", "f?", "[f]*", "a&&b", "a&b", "$HOME",
            "~", "{f1,f2}", "a#b", "!x", "(x)", "a\\b", "$((1+1))", "${IFS}"]


@pytest.mark.parametrize("value", NO_SPACE, ids=range(len(NO_SPACE)))
def test_values_without_spaces_reach_sh_as_one_literal_word(plan, value, tmp_path):
    # A non-empty folder: an unquoted glob would expand to these names.
    for name in ("f1", "f2", "f"):
        (tmp_path / name).write_text("x")
    before = {p.name: p.read_text() for p in tmp_path.iterdir()}
    text = render_script(
        inline(plan, "printf '[%s]\\n' {{ vars.x }}\n"), plan=replace(plan, vars={"x": value}),
        run="r1", service="compute", index=0, world=placeholder_world(plan))
    out = subprocess.run(["/bin/sh", "-c", text], capture_output=True, text=True, cwd=tmp_path,
                         env={"PATH": "/nonexistent", "HOME": "/home-dir"}, check=True)
    assert out.stdout == f"[{value}]\n"  # one word, exactly the value
    # `>f` neither created nor truncated a file.
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == before


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\0"),
                     max_size=40))
def test_any_value_reaches_sh_as_one_literal_word(plan, value, tmp_path):
    """The tables above, for any text (hypothesis): quoting depends on no character class."""
    text = render_script(
        inline(plan, "printf '[%s]' {{ vars.x }}\n"), plan=replace(plan, vars={"x": value}),
        run="r1", service="compute", index=0, world=placeholder_world(plan))
    out = subprocess.run(["/bin/sh", "-c", text], capture_output=True, cwd=tmp_path,
                         env={"PATH": "/nonexistent", "HOME": "/home-dir"}, check=True)
    assert out.stdout == f"[{value}]".encode()


ESCAPE_PAYLOADS = [
    "cycler.__init__.__globals__.os.system('touch {x}')",
    "joiner.__init__.__globals__.os.system('touch {x}')",
    "lipsum.__globals__['os'].system('touch {x}')",
    "self.__class__.__init__.__globals__",
    "''.__class__.__mro__[1].__subclasses__()",
    "'{{0.__class__}}'.format(vars)",
    "vars.update({{'x': 1}})",
]


@pytest.mark.parametrize("payload", ESCAPE_PAYLOADS, ids=range(len(ESCAPE_PAYLOADS)))
def test_templates_cannot_run_code_here(plan, payload, tmp_path):
    marker = tmp_path / "X"
    text = "{{ " + payload.format(x=marker) + " }}"
    with pytest.raises(PlanError) as info:
        render(plan, f"echo start\n{text}\n")
    assert str(info.value).startswith("scripts/t.sh.j2:2: ")
    assert "not allowed in a template" in str(info.value) or "unsafe" in str(info.value)
    with pytest.raises(PlanError):
        render_value(text, plan=plan, run="r", service="compute", index=0,
                     world=placeholder_world(plan), where="plan.yml:9")
    assert not marker.exists()


@pytest.mark.parametrize("text, message", [
    ("{{ range(10**8)|list }}", "Range too big"),
    ("{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}",
     "too expensive|too slow"),
    ("{{ 'a' * 10**9 }}", "too large"),
    ("{{ 'x'|center(10**9) }}", "too large"),
    ("{{ '%999999999d' % 1 }}", "too large"),
    ("{{ 2 ** (10 ** 9) }}", "number too large"),
    ("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
     ":1: template recursion too deep while rendering service 'compute'$"),
    ("{% set ns = namespace(a='x') %}{% for i in range(60) %}{% set ns.a = ns.a ~ ns.a %}"
     "{% endfor %}", "too large"),
])
def test_render_budget_stops_runaway_templates(plan, text, message):
    with pytest.raises(PlanError) as info:
        render(plan, text)
    assert re.search(message, str(info.value))
    assert str(info.value).startswith("scripts/t.sh.j2:1: ")


def test_budget_leaves_ordinary_loops_alone(plan):
    text = render(plan, "{% for i in range(5000) %}{{ i }}{% endfor %}\n"
                        "{{ 'ab' * 3 }} {{ 2 ** 10 }} {{ [1, 2]|join('-') }} {{ 'a' ~ 'b' }}\n")
    assert text.endswith("4999\nababab 1024 1-2 ab\n")


def test_a_render_session_bounds_all_renders_together(plan):
    from cloudinitd.sandbox import render_session

    assert render(plan, "ok\n") == "ok\n"
    with render_session(0.0), pytest.raises(PlanError) as info:
        render(plan, "ok\n", service="head")
    assert "templates too slow" in str(info.value)
    # Refused before the template ran: no line of it is named (none is invented).
    assert (info.value.file, info.value.line) == ("scripts/t.sh.j2", None)
    assert render(plan, "ok\n") == "ok\n"  # the session ended with its block


def test_placeholder_extra_is_a_home_that_reaches_nobody():
    assert placeholder_extra() == {"home": {
        "user": "<home.user>", "dir": "<home.dir>", "key": "<home.key>",
        "known_host": "<home.known_host>", "host": "192.0.2.254", "port": 22,
    }}


def test_placeholder_world_of_hosts_chains_and_addresses(tmp_path):
    (tmp_path / "p.yml").write_text("""\
services:
  base: {exports: [port], values: {url: "u"}}
  two: {count: 2}
  pool: {hosts: [192.0.2.10, 192.0.2.11]}
  on_base: {host: base}
  on_on_base: {host: on_base, exports: [k]}
  fixed: {host: 198.51.100.9}
  on_fixed: {host: fixed}
""")
    world = placeholder_world(load_plan(tmp_path / "p.yml"))
    [base0] = world["base"]
    assert base0 == {
        "address": "192.0.2.1", "private_address": "192.0.2.1", "hostname": "base-0",
        "instance_id": "dry-run-base-0", "cloud": base0["cloud"], "index": 0, "name": "base",
        "port": "<base.port>", "url": "<base.url>",
    }
    assert [(t["address"], t["index"], t["hostname"]) for t in world["two"]] == [
        ("192.0.2.2", 0, "two-0"), ("192.0.2.3", 1, "two-1")]
    pool = [(p["address"], p["private_address"], p["hostname"], p["cloud"]) for p in world["pool"]]
    assert pool == [
        ("192.0.2.10", "192.0.2.10", "pool-0", "static"),
        ("192.0.2.11", "192.0.2.11", "pool-1", "static"),
    ]
    # On another service's machine, through any chain: that machine, under its own name.
    machine = {k: base0[k] for k in ("address", "private_address", "hostname", "instance_id",
                                     "cloud")}
    for name in ("on_base", "on_on_base"):
        assert len(world[name]) == 1
        assert world[name][0] == {**machine, "index": 0, "name": name,
                                  **({"k": "<on_on_base.k>"} if name == "on_on_base" else {})}
    for name in ("fixed", "on_fixed"):
        assert len(world[name]) == 1
        one = world[name][0]
        assert (one["address"], one["private_address"], one["hostname"], one["cloud"]) == (
            "198.51.100.9", "198.51.100.9", f"{name}-0", "static")


def test_placeholder_addresses_go_through_all_three_test_nets_and_round_again(tmp_path):
    (tmp_path / "p.yml").write_text("services:\n  many: {count: 763}\n")
    addresses = [a["address"] for a in placeholder_world(load_plan(tmp_path / "p.yml"))["many"]]
    assert addresses[:2] == ["192.0.2.1", "192.0.2.2"]
    assert addresses[253:256] == ["192.0.2.254", "198.51.100.1", "198.51.100.2"]
    assert addresses[508:510] == ["203.0.113.1", "203.0.113.2"]
    assert addresses[761:] == ["203.0.113.254", "192.0.2.1"]


def test_template_views_name_what_the_author_wrote():
    from jinja2.exceptions import TemplateRuntimeError
    from jinja2.utils import missing

    from cloudinitd.templateviews import (
        SelfView,
        ServiceView,
        _Labelled,
        _LabelledList,
        _Undefined,
    )

    web = ServiceView("web", [{"address": "a0", "port": 1}, {"address": "a1", "port": 2}])
    one = ServiceView("db", [{"address": "d0", "url": "u"}])
    assert web.count == 2 and web["count"] == 2 and one.count == 1
    assert web.instances._cid_label == "web.instances"
    assert [i._cid_label for i in web.instances] == ["web.instances[0]", "web.instances[1]"]
    assert web.instances[1].address == "a1" and web.instances[1]["port"] == 2
    assert (one.address, one.url, one["url"]) == ("d0", "u", "u")
    for name in ("address", "port", "hostname"):  # built in, or an instance's own
        with pytest.raises(TemplateRuntimeError) as info:
            getattr(web, name)
        assert str(info.value) == (
            f"service 'web' has 2 instances: use web.instances (e.g. {{% for i in web.instances"
            f" %}}{{{{ i.{name} }}}}{{% endfor %}}), not web.{name}")
    for view in (web, one, web.instances[0]):
        for name in ("nope", "_attrs_x", "_cid"):
            with pytest.raises(AttributeError) as err:
                getattr(view, name)
            assert err.value.args == (name,)
        # Copying looks up dunder names before __init__ has run: no recursion.
        assert copy.copy(view)._cid_label == view._cid_label
        assert copy.deepcopy(view)._cid_label == view._cid_label
    with pytest.raises(KeyError) as key:
        web["nope"]
    assert key.value.args == ("nope",)
    with pytest.raises(KeyError):
        web.instances[0]["nope"]
    with pytest.raises(TemplateRuntimeError, match=r"^'web' is a service, not a value: use "
                       r"web\.address or another attribute$"):
        str(web)
    with pytest.raises(TemplateRuntimeError, match=r"^'web\.instances\[1\]' is an instance, not "
                       r"a value: use web\.instances\[1\]\.address or another attribute$"):
        str(web.instances[1])
    me = SelfView(web, {"address": "a1", "index": 1})
    assert (me.address, me.count, me.instances is web.instances, me._cid_label) == (
        "a1", 2, True, "self")
    assert SelfView(web, {"count": "own"}).count == "own"  # its own attribute comes first
    assert not hasattr(me, "nope")

    def message(name, obj, hint=None):
        return _Undefined(hint=hint, obj=obj, name=name)._undefined_message

    assert message("cid_self_", missing) == "undefined 'self'"
    assert message("nope", missing) == "undefined 'nope'"
    assert message("x", {"a": 1}) == "undefined 'x' of a dict value"
    assert message("x", _Labelled("vars", {})) == "undefined 'vars.x'"
    assert message(5, _LabelledList("web.instances", [])) == "undefined 'web.instances[5]'"
    assert message("x", missing, hint="told so") == "told so"


# --- what the mutation run (docs/mutation-survivors.md, templates.py) showed untested ---


def fields_plan(tmp_path):
    """A plan whose env, values and step args use run, the home share and other services."""
    (tmp_path / "b.sh.j2").write_text("echo {{ env.WHERE }} {{ env.SHARE }}\n")
    (tmp_path / "p.yml").write_text("""\
services:
  db: {exports: [port]}
  web:
    after: [db]
    boot:
      script: b.sh.j2
      args: ["{{ run }}/{{ self.index }}", "{{ home.user }} x", "{{ db.port }}"]
    env: {WHERE: "{{ run }}:{{ self.hostname }}", SHARE: "{{ home.user }}@{{ home.dir }}"}
    values:
      url: "http://{{ self.address }}/{{ run }}"
      share: "{{ home.dir }}"
""")
    return load_plan(tmp_path / "p.yml")


HOME = {"home": {"user": "me", "dir": "/srv/a b", "host": "10.0.0.1", "port": 22}}


def test_env_values_and_args_see_run_self_and_the_home_share(tmp_path):
    from cloudinitd.templates import render_args, render_env, render_values

    plan = fields_plan(tmp_path)
    world = placeholder_world(plan)
    kw = dict(plan=plan, run="r7", service="web", index=0, world=world, extra=HOME)
    assert render_env(**kw) == {"WHERE": "r7:web-0", "SHARE": "me@/srv/a b"}
    assert render_values(**kw) == {"url": f"http://{world['web'][0]['address']}/r7",
                                   "share": "/srv/a b"}
    assert render_args(plan.services["web"].scripts["boot"], **kw) == [
        "r7/0", "me x", "<db.port>"]
    # The script sees the env rendered the same way (and shell-quoted when printed).
    assert render_script(plan.services["web"].scripts["boot"], **kw) == (
        "echo r7:web-0 'me@/srv/a b'\n")
    nope = replace(plan.services["web"].scripts["boot"], source="{{ env.NOPE }}")
    with pytest.raises(PlanError, match=r"b\.sh\.j2:1: undefined 'env\.NOPE' while rendering"):
        render_script(nope, **kw)


@pytest.mark.parametrize("field, line", [("env", 8), ("values", 11), ("args", 7)])
def test_a_bad_env_value_value_or_arg_is_reported_at_its_own_plan_line(tmp_path, field, line):
    import cloudinitd.templates as templates

    plan = fields_plan(tmp_path)
    kw = dict(plan=plan, run="r7", service="web", index=0, world=placeholder_world(plan))
    with pytest.raises(PlanError) as info:  # this run has no home share
        if field == "args":
            templates.render_args(plan.services["web"].scripts["boot"], **kw)
        else:
            getattr(templates, f"render_{field}")(**kw)
    assert str(info.value) == (
        f"{tmp_path / 'p.yml'}:{line}: undefined 'home' while rendering {field} of service 'web'")


def test_environ_holds_this_machines_environment_without_secret_names(plan, monkeypatch):
    monkeypatch.setenv("CID_T_REGION", "north")
    monkeypatch.setenv("CID_T_SECRET_KEY", "s3cr3t")
    monkeypatch.setenv("CID_T_TOKEN", "t0k3n")
    assert render(plan, "{{ environ.CID_T_REGION }} {{ environ.HOME | default('-') }}") == \
        f"north {__import__('os').environ.get('HOME', '-')}"
    assert render_value("{{ environ.CID_T_REGION }}", plan=plan, run="r", service="compute",
                        index=0, world=placeholder_world(plan), where="p.yml:3") == "north"
    for name in ("CID_T_SECRET_KEY", "CID_T_TOKEN"):
        with pytest.raises(PlanError) as info:
            render(plan, f"{{{{ environ.{name} }}}}")
        assert str(info.value) == (f"scripts/t.sh.j2:1: undefined 'environ.{name}' while "
                                   "rendering service 'compute'")


def test_extra_values_that_are_not_mappings_are_given_as_they_are(plan):
    assert render(plan, "{{ flag }} {{ n + 1 }}", extra={"flag": "on; x", "n": 41}) == \
        "'on; x' 42"


def test_a_world_without_a_service_renders_what_does_not_name_it(plan):
    world = {"head": placeholder_world(plan)["head"]}  # compute not in it (yet)
    text = "{{ self.hostname }} {{ compute.count }}"
    assert render(plan, text, world, service="head") == "head-0 0"
    with pytest.raises(PlanError, match="service 'compute' has no instance 0 to render for"):
        render(plan, "x", world, service="compute")


def test_self_is_its_service_in_the_plan_or_else_the_worlds_instances(plan):
    text = "{{ self.instances is sameas compute.instances }}"
    assert render(plan, text) == "True"  # one view of the service, not a copy per name
    world = {**placeholder_world(plan), "gone": [{"index": 0, "address": "192.0.2.50"},
                                                 {"index": 1, "address": "192.0.2.51"}]}
    # A service the world has and the plan no longer names (it was removed since boot).
    kw = dict(plan=plan, run="r", service="gone", world=world, where="p.yml:2")
    text = "{{ self.address }} {{ self.count }} {{ self.instances[0].address }}"
    assert render_value(text, index=1, **kw) == "192.0.2.51 2 192.0.2.50"
    with pytest.raises(PlanError, match=r"undefined 'gone\.instances\[5\]'"):
        render_value("{{ self.instances[5].address }}", index=0, **kw)


def test_instances_without_an_index_are_taken_by_position(plan):
    world = {**placeholder_world(plan),
             "compute": [{"hostname": "c-a"}, {"hostname": "c-b"}]}
    assert render(plan, "{{ self.hostname }}", world, index=0) == "c-a"
    assert render(plan, "{{ self.hostname }}", world, index=1) == "c-b"
    for index in (2, -1):
        with pytest.raises(PlanError, match=f"has no instance {index} to render for"):
            render(plan, "x", world, index=index)


def test_render_vars_sees_only_vars_and_errors_carry_where():
    from cloudinitd.templates import render_vars

    assert render_vars("{{ vars.n * 2 }} {{ vars.s }}", {"n": 3, "s": "a b"}, "p.yml:4") == "6 a b"
    for text in ("{{ vars.nope }}", "{{ run }}"):
        with pytest.raises(PlanError) as info:
            render_vars(text, {"n": 3}, "p.yml:4")
        assert (info.value.file, info.value.line) == ("p.yml:4", None)
        assert str(info.value).startswith("p.yml:4: undefined ")


@pytest.mark.parametrize("shell", [True, False])
def test_the_environments_quote_keep_newlines_and_fail_on_undefined(shell):
    from jinja2 import UndefinedError

    from cloudinitd.sandbox import BoundedSandbox
    from cloudinitd.templates import _lipsum, _make_env

    env = _make_env(shell=shell)
    assert isinstance(env, BoundedSandbox)
    out = env.from_string("{{ a }} {{ a | safe }} {{ a | shquote }} {{ h }}\n").render(
        a="x y", h="<b>")
    quoted = "'x y'" if shell else "x y"
    assert out == f"{quoted} x y 'x y' {'<b>' if not shell else repr('<b>')}\n"
    assert env.globals["lipsum"] is _lipsum
    with pytest.raises(UndefinedError, match="^undefined 'nope'$"):
        env.from_string("{{ nope }}").render()
    with pytest.raises(UndefinedError):
        env.from_string("{% if nope %}{% endif %}").render()  # strict: even a test fails


@pytest.mark.parametrize("args, words, paragraphs", [
    ("2, false, 5, 6", 5, 2),
    ("1, false, -9, 2", 1, 1),  # min at least 1
    ("10 ** 6, false, 1, 2", 1, 100),  # at most 100 paragraphs
    ("-3, false", 0, 0),
    ("1, false, 999, 10 ** 9", 999, 1),  # max at most 1000
    ("1, false, 10 ** 9, 1000", 999, 1),  # min at most 1000: an empty range, refused below
    ("1, false, 1, -5", 1, 1),  # max at least 1: an empty range too
])
def test_lipsum_is_bounded(plan, args, words, paragraphs):
    if args.startswith(("1, false, 10 ** 9", "1, false, 1, -5")):
        with pytest.raises(PlanError, match="ValueError"):
            render(plan, f"{{{{ lipsum({args}) }}}}", name="t.txt.j2")
        return
    import random

    for seed in range(8):  # the word count is drawn: the same for every draw
        random.seed(seed)
        text = render(plan, f"{{{{ lipsum({args}) }}}}", name="t.txt.j2")
        got = [p.split() for p in text.split("\n\n")] if text else []
        assert len(got) == paragraphs and all(len(p) == words for p in got)
        assert "<p>" not in text


def test_lipsum_defaults_are_jinjas(plan):
    import random

    from jinja2.utils import generate_lorem_ipsum

    for call, args in [("lipsum()", {}), ("lipsum(2)", {"n": 2}),
                       ("lipsum(1, true, 3, 7)", {"n": 1, "min": 3, "max": 7})]:
        random.seed(7)
        want = str(generate_lorem_ipsum(**args))
        random.seed(7)
        assert render(plan, f"{{{{ {call} }}}}", name="t.txt.j2") == want
        assert want.startswith("<p>")
    for seed in range(20):  # the default max is 100 (exclusive): 99 words exactly
        random.seed(seed)
        assert len(render(plan, "{{ lipsum(1, false, 99) }}", name="t.txt.j2").split()) == 99


def test_reasons_name_what_went_wrong_without_a_message():
    from jinja2 import TemplateError
    from jinja2.exceptions import SecurityError

    from cloudinitd.templates import _reason

    assert _reason(SecurityError()) == "not allowed in a template: SecurityError"
    assert _reason(SecurityError("no access to X.")) == "not allowed in a template: no access to X"
    assert _reason(TemplateError()) == "TemplateError"
    assert _reason(RecursionError("deep")) == "template recursion too deep"
    assert _reason(MemoryError()) == "template needs too much memory"
    assert _reason(KeyError("k")) == "KeyError: 'k'"


def test_an_autoscale_sensors_args_are_rendered(tmp_path):
    """Each sensor arg renders, and an error in one is reported at its own line (all
    were once dropped without a word, then reported at the sensor's line)."""
    from cloudinitd.templates import render_args

    (tmp_path / "load.sh").write_text("echo 1\n")
    (tmp_path / "p.yml").write_text("""\
vars: {x: "7"}
services:
  web:
    count: 2
    autoscale:
      min: 1
      max: 4
      sensor:
        script: load.sh
        args:
          - "{{ vars.x }}"
          - "{{ self.index }}"
          - a b
      thresholds: {above: 80, below: 10}
""")
    plan = load_plan(tmp_path / "p.yml")
    sensor = plan.services["web"].autoscale.sensor
    assert [p.line for p in sensor.args_pos] == [11, 12, 13]
    kw = dict(plan=plan, run="r", service="web", index=1, world=placeholder_world(plan))
    assert render_args(sensor, **kw) == ["7", "1", "a b"]
    bad = replace(sensor, args=["ok", "{{ self.nope }}"], args_pos=sensor.args_pos[:2])
    with pytest.raises(PlanError) as info:
        render_args(bad, **kw)
    assert str(info.value) == (f"{tmp_path / 'p.yml'}:12: undefined 'self.nope'"
                               " while rendering args of service 'web'")
    # Built by hand without positions: each arg still renders, errors at the step's line.
    bare = replace(sensor, args=["{{ vars.nope }}"], args_pos=[])
    with pytest.raises(PlanError) as info:
        render_args(bare, **kw)
    assert str(info.value).startswith(f"{tmp_path / 'p.yml'}:9: undefined 'vars.nope'")


@pytest.mark.parametrize(("sensor", "line", "message"), [
    ('{script: load.sh, args: ["{{ vars.nope }}"]}', 7, "unknown variable 'vars.nope'"),
    ("{script: load.sh.j2}", 1, "unknown service or variable 'nosuch'"),
])
def test_a_sensors_template_errors_are_found_when_the_plan_loads(tmp_path, sensor, line,
                                                                 message):
    (tmp_path / "load.sh").write_text("echo 1\n")
    (tmp_path / "load.sh.j2").write_text("echo {{ nosuch.address }}\n")
    (tmp_path / "p.yml").write_text(f"""\
services:
  web:
    count: 2
    autoscale:
      min: 1
      max: 4
      sensor: {sensor}
      target: 50
""")
    with pytest.raises(PlanErrors) as info:
        load_plan(tmp_path / "p.yml")
    text = str(info.value)
    where = "p.yml" if "args" in sensor else "load.sh.j2"
    assert f"{where}:{line}:" in text and message in text, text
