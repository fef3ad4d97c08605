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
from cloudinitd.plan.model import Pos

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
