"""A deterministic generator of hostile inputs: bad plans, bad scripts, bad command lines.

Each `Case` is a folder's worth of files plus a `cloudinitd` command line,
and what a correct cloudinitd must answer: exit 2, one `cloudinitd: error:`
line per problem, `FILE:LINE` when the fault is in a file (`located`), and
no side effect (`PWNED` never created, nothing under $CLOUDINITD_HOME).
The schema drives the wrong-type cases, so a key added to the schema is
attacked too.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field

from jsonschema import Draft202012Validator

from cloudinitd.plan.schema import PLAN_SCHEMA, SERVICE_PROPERTIES
from tests.support.hostile import FILE_FIELDS, HOSTILE, ORIGINAL, ORIGINAL_FIELDS, SPECIAL_FILES

MARKER = "PWNED"  # every code-execution payload tries to create this file in the case folder


@dataclass
class Case:
    id: str
    files: dict[str, bytes]
    argv: list[str]
    located: str | None = "plan.yml"  # the file the error must name as FILE:LINE (None: argv)
    line: int | None = None  # the line, when the generator knows it
    kind: str = ""
    extra: dict = field(default_factory=dict)
    # name -> FIFO, FOLDER or LOOP (tests/support/hostile.py): made beside `files`
    special: dict[str, str] = field(default_factory=dict)
    absent: list[str] = field(default_factory=list)  # files the command must not write


def _y(value: object) -> str:
    """A value as one line of YAML (JSON is YAML)."""
    return json.dumps(value)


def _plan(text: str, **scripts: str | bytes) -> dict[str, bytes]:
    files = {"plan.yml": text.encode() if isinstance(text, str) else text}
    for name, body in scripts.items():
        files[name.replace("_", ".")] = body.encode() if isinstance(body, str) else body
    return files


_POOL: list[object] = [1, -1, 1.5, True, "x", "", [], [1], ["a b"], {}, {"k": 1}, None,
                       "a\nb", 10**30]


def _bad_values(schema: dict) -> list[object]:
    check = Draft202012Validator(schema)
    return [v for v in _POOL if not check.is_valid(v)]


def wrong_types() -> Iterator[Case]:
    for key, sub in PLAN_SCHEMA["properties"].items():
        if key == "services":
            values = _bad_values(sub) + [{"1bad": {}}, {"a": []}, {"a": 1}]
        else:
            values = [v for v in _bad_values(sub) if v is not None]  # `vars:` alone is empty
        for i, value in enumerate(values):
            text = f"{key}: {_y(value)}\n" + ("" if key == "services" else "services: {a: {}}\n")
            yield Case(f"top-{key}-{i}", _plan(text), ["validate", "plan.yml"], line=1,
                       kind="wrong type")
    for key, sub in SERVICE_PROPERTIES.items():
        for i, value in enumerate(_bad_values(sub)):
            if value is None and key in ("env",):
                continue  # an empty `env:` is allowed
            yield Case(f"service-{key}-{i}",
                       _plan(f"services:\n  a:\n    {key}: {_y(value)}\n"),
                       ["validate", "plan.yml"], line=3, kind="wrong type")
            yield Case(f"defaults-{key}-{i}",
                       _plan(f"defaults:\n  {key}: {_y(value)}\nservices:\n  a: {{}}\n"),
                       ["validate", "plan.yml"], line=2, kind="wrong type")
    nested = {
        "clouds-entry": ("clouds:\n  c:\n    provider: 7\nservices: {a: {}}\n", 3),
        "clouds-max": ("services:\n  a:\n    clouds:\n      - {cloud: local, max: -5}\n", 4),
        "clouds-item": ("services:\n  a:\n    clouds:\n      - local\n", 4),
        "spot-price": ("services:\n  a:\n    spot: {max_price: [1]}\n", 3),
        "spot-fallback": ("services:\n  a:\n    spot: {fallback: maybe}\n", 3),
        "env-list": ("services:\n  a:\n    env:\n      A: [1, 2]\n", 4),
        "env-name": ("services:\n  a:\n    env:\n      1A: x\n", 4),
        "exports-item": ("services:\n  a:\n    exports:\n      - ok\n      - 1bad\n", 5),
        "after-item": ("services:\n  a:\n    after:\n      - b\n      - 7\n  b: {}\n", 5),
    }
    for name, (text, line) in nested.items():
        yield Case(f"nested-{name}", _plan(text), ["validate", "plan.yml"], line=line,
                   kind="wrong type")


def _typo(word: str) -> str:
    return word[:-1] + ("x" if word[-1] != "x" else "y")


def unknown_keys() -> Iterator[Case]:
    for key in PLAN_SCHEMA["properties"]:
        yield Case(f"unknown-top-{key}", _plan(f"services: {{a: {{}}}}\n{_typo(key)}: 1\n"),
                   ["validate", "plan.yml"], line=2, kind="unknown key")
    for key in SERVICE_PROPERTIES:
        yield Case(f"unknown-service-{key}", _plan(f"services:\n  a:\n    {_typo(key)}: 1\n"),
                   ["validate", "plan.yml"], line=3, kind="unknown key")
        yield Case(f"unknown-defaults-{key}",
                   _plan(f"defaults:\n  {_typo(key)}: 1\nservices: {{a: {{}}}}\n"),
                   ["validate", "plan.yml"], line=2, kind="unknown key")
    for key in ("cloud", "max"):
        yield Case(f"unknown-clouds-{key}",
                   _plan(f"services:\n  a:\n    clouds:\n      - cloud: local\n        {_typo(key)}: 1\n"),
                   ["validate", "plan.yml"], line=5, kind="unknown key")


def alias_bombs() -> Iterator[Case]:
    for depth in (6, 7, 8, 9, 12):  # 9**6 values is past the limit; 9**5 is not
        for width in (9, 10, 16):
            lines = [f"  l0: &l0 [{', '.join(['lol'] * width)}]"]
            for d in range(1, depth):
                lines.append(f"  l{d}: &l{d} [{', '.join([f'*l{d - 1}'] * width)}]")
            text = "vars:\n" + "\n".join(lines) + "\nservices: {a: {}}\n"
            yield Case(f"laughs-vars-{depth}x{width}", _plan(text), ["validate", "plan.yml"],
                       kind="alias bomb")
    for depth in (8, 10, 16):
        lines = ["  m0: &m0 {a: 1, b: 2, c: 3, d: 4}"]
        for d in range(1, depth):
            lines.append(f"  m{d}: &m{d} {{<<: [*m{d - 1}], x{d}: [*m{d - 1}, *m{d - 1}, "
                         f"*m{d - 1}, *m{d - 1}, *m{d - 1}, *m{d - 1}, *m{d - 1}, *m{d - 1}]}}")
        text = "vars:\n" + "\n".join(lines) + "\nservices: {a: {}}\n"
        yield Case(f"laughs-merge-{depth}", _plan(text), ["validate", "plan.yml"],
                   kind="alias bomb")
    yield Case("alias-self-list", _plan("vars:\n  a: &a [1, *a]\nservices: {a: {}}\n"),
               ["validate", "plan.yml"], line=2, kind="alias bomb")
    yield Case("alias-self-map", _plan("vars:\n  a: &a {x: *a}\nservices: {a: {}}\n"),
               ["validate", "plan.yml"], line=2, kind="alias bomb")
    yield Case("alias-undefined", _plan("vars:\n  a: *nope\nservices: {a: {}}\n"),
               ["validate", "plan.yml"], line=2, kind="alias bomb")
    width = 10
    lines = [f"      E0: &e0 [{', '.join(['x'] * width)}]"]
    text = ("services:\n  a:\n    env:\n" + "\n".join(lines) + "\n")
    yield Case("alias-in-env", _plan(text), ["validate", "plan.yml"], line=4, kind="alias bomb")


def deep_nesting() -> Iterator[Case]:
    for n in (101, 150, 500, 999, 1000, 5000, 10_000, 100_000):
        yield Case(f"deep-flow-list-{n}", _plan("services: " + "[" * n), ["validate", "plan.yml"],
                   line=1, kind="deep nesting")
        yield Case(f"deep-flow-map-{n}", _plan("vars: " + "{a: " * n + "1" + "}" * n +
                                                "\nservices: {a: {}}\n"),
                   ["validate", "plan.yml"], line=1, kind="deep nesting")
    for n in (120, 400):
        text = "vars:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(n))
        yield Case(f"deep-block-{n}", _plan(text + "services: {a: {}}\n"),
                   ["validate", "plan.yml"], kind="deep nesting")
    yield Case("deep-seq-block", _plan("vars:\n  x:\n" + "".join(
        "  " * (i + 2) + "-\n" for i in range(300)) + "services: {a: {}}\n"),
        ["validate", "plan.yml"], kind="deep nesting")


_CONTROL = [c for c in range(0x20) if c not in (0x09, 0x0A, 0x0D)] + [0x7F]
_BAD_UTF8 = [b"\x80", b"\xc3", b"\xff", b"\xfe", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf8\x88\x80\x80",
             b"\xe2\x82"]


def bad_bytes() -> Iterator[Case]:
    good = "services:\n  a:\n    image: debian\n    size: small\n"
    for c in _CONTROL:
        for line in (1, 3, 4):
            rows = good.splitlines(keepends=True)
            rows[line - 1] = rows[line - 1][:-1] + f" # {chr(c)}\n" if line != 1 else \
                f"services: # {chr(c)}\n"
            yield Case(f"control-{c:02x}-line{line}", _plan("".join(rows)),
                       ["validate", "plan.yml"], line=line, kind="control byte")
    for i, seq in enumerate(_BAD_UTF8):
        for line in (1, 3):
            rows = [r.encode() for r in good.splitlines(keepends=True)]
            rows[line - 1] = rows[line - 1][:-1] + b" " + seq + b"\n"
            yield Case(f"utf8-{i}-line{line}", {"plan.yml": b"".join(rows)},
                       ["validate", "plan.yml"], line=line, kind="non-UTF-8")
        script = b"#!/bin/sh\necho hi\necho " + seq + b"\n"
        yield Case(f"utf8-script-{i}",
                   _plan("services:\n  a:\n    boot: s.sh.j2\n", s_sh_j2=script),
                   ["validate", "plan.yml"], located="s.sh.j2", line=3, kind="non-UTF-8")
    for sep in ("\u2028", "\u2029", "\x85"):
        text = f"vars:\n  a: \"x{sep}y\"\n  b: 'p{sep}q'\nservices:\n  a:\n    nope: 1\n"
        yield Case(f"linebreak-{ord(sep):04x}", _plan(text), ["validate", "plan.yml"], line=6,
                   kind="unicode line break")
    yield Case("nl-in-value", _plan('services:\n  a:\n    host: "x\\ny"\n'),
               ["validate", "plan.yml"], line=3, kind="newline in message")
    yield Case("nl-in-key", _plan('services:\n  a:\n    "bo\\not": 1\n'),
               ["validate", "plan.yml"], line=3, kind="newline in message")
    yield Case("nl-in-cloud", _plan('services:\n  a:\n    cloud: "lo\\ncal"\n'),
               ["validate", "plan.yml"], line=3, kind="newline in message")
    yield Case("nl-in-script-ref", _plan('services:\n  a:\n    boot: "x\\ny.sh"\n'),
               ["validate", "plan.yml"], line=3, kind="newline in message")
    yield Case("nul-in-script-ref", _plan('services:\n  a:\n    boot: "x\\0y.sh"\n'),
               ["validate", "plan.yml"], line=3, kind="newline in message")
    yield Case("long-script-path", _plan(f"services:\n  a:\n    boot: {'x' * 300}.sh\n"),
               ["validate", "plan.yml"], line=3, kind="OSError")
    yield Case("long-script-dir", _plan(f"services:\n  a:\n    boot: {('y' * 200 + '/') * 30}b\n"),
               ["validate", "plan.yml"], line=3, kind="OSError")
    yield Case("script-is-dir", _plan("services:\n  a:\n    boot: /\n"),
               ["validate", "plan.yml"], line=3, kind="OSError")
    yield Case("empty-plan", {"plan.yml": b""}, ["validate", "plan.yml"], line=1, kind="shape")
    yield Case("plan-is-list", _plan("- a\n- b\n"), ["validate", "plan.yml"], line=1,
               kind="shape")
    yield Case("huge-int", _plan(f"vars:\n  n: {'9' * 5000}\nservices: {{a: {{}}}}\n"),
               ["validate", "plan.yml"], kind="shape")


# Each tries to run `touch PWNED` here, or to reach Python internals.
ESCAPES = [
    "cycler.__init__.__globals__.os.system('touch PWNED')",
    "joiner.__init__.__globals__.os.popen('touch PWNED').read()",
    "namespace.__init__.__globals__.os.system('touch PWNED')",
    "lipsum.__globals__['os'].system('touch PWNED')",
    "''.__class__.__mro__[1].__subclasses__()",
    "().__class__.__base__.__subclasses__()",
    "range.__self__.__import__('os').system('touch PWNED')",
    "(vars|attr('__class__')).__init__",
    "'{0.__class__.__init__.__globals__}'.format(cycler)",
    "self.__class__.__init__.__globals__",
    "vars.__class__.__mro__",
    "vars.update({'x': 1})",
    "[].append(1)",
    "cycler.__init__.__globals__['__builtins__']['exec']('open(\"PWNED\",\"w\")')",
]
# Each asks for more CPU or memory than a render may have.
RUNAWAYS = [
    "range(10**8)|list|length",
    "'a' * 10**9",
    "'x'|center(10**9)",
    "'%999999999d' % 1",
    "'{:999999999}'.format(1)",
    "'x'.ljust(10**9)",
    "2 ** (10 ** 9)",
    "[0] * 10**9",
    "('a' * 1000)|replace('a', 'a' * 100000)",
    "range(100000)|join(',') * 100",
]
_LOOPS = [
    "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}",
    "{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(60) }}",
    "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
    "{% set ns = namespace(a='x') %}{% for i in range(60) %}{% set ns.a = ns.a ~ ns.a %}"
    "{% endfor %}{{ ns.a|length }}",
]


def _payloads() -> list[tuple[str, str]]:
    out = [(f"escape{i}", "{{ " + p + " }}") for i, p in enumerate(ESCAPES)]
    out += [(f"runaway{i}", "{{ " + p + " }}") for i, p in enumerate(RUNAWAYS)]
    out += [(f"loop{i}", p) for i, p in enumerate(_LOOPS)]
    return out


def sandbox_escapes() -> Iterator[Case]:
    for pid, payload in _payloads():
        quoted = json.dumps(payload)
        yield Case(f"count-{pid}", _plan(f"services:\n  a:\n    count: {quoted}\n"),
                   ["validate", "plan.yml"], line=3, kind="sandbox")
        yield Case(f"host-{pid}", _plan(f"services:\n  a:\n    host: {quoted}\n"),
                   ["validate", "plan.yml"], line=3, kind="sandbox")
        yield Case(f"env-{pid}", _plan(f"services:\n  a:\n    env:\n      E: {quoted}\n"),
                   ["boot", "--dry-run", "plan.yml"], line=4, kind="sandbox")
        for step in ("boot", "ready", "terminate"):
            script = f"#!/bin/sh\necho start\n{payload}\n"
            yield Case(f"{step}-{pid}",
                       _plan(f"services:\n  a:\n    {step}: s.sh.j2\n", s_sh_j2=script),
                       ["boot", "--dry-run", "plan.yml"], located="s.sh.j2", line=3,
                       kind="sandbox")
        yield Case(f"pyscript-{pid}",
                   _plan("services:\n  a:\n    boot: s.py.j2\n", s_py_j2=f"x = 1\n{payload}\n"),
                   ["boot", "--dry-run", "plan.yml"], located="s.py.j2", line=2,
                   kind="sandbox")


def huge() -> Iterator[Case]:
    for exp in (4, 6, 9, 12, 18, 30):
        yield Case(f"count-1e{exp}", _plan(f"services:\n  a:\n    count: {10**exp}\n"),
                   ["validate", "plan.yml"], line=3, kind="huge count")
        yield Case(f"count-tpl-1e{exp}",
                   _plan(f"services:\n  a:\n    count: \"{{{{ 10 ** {exp} }}}}\"\n"),
                   ["boot", "--dry-run", "plan.yml"], line=3, kind="huge count")
        yield Case(f"count-var-1e{exp}",
                   _plan("vars: {n: 1}\nservices:\n  a:\n    count: \"{{ vars.n }}\"\n"),
                   ["boot", "--dry-run", "plan.yml", "--var", f"n={10**exp}"], line=4,
                   kind="huge count")
    yield Case("count-over-service-limit", _plan("services:\n  a:\n    count: 1001\n"),
               ["validate", "plan.yml"], line=3, kind="huge count")
    yield Case("count-over-run-limit",
               _plan("services:\n" + "".join(f"  s{i}:\n    count: 900\n" for i in range(3))),
               ["validate", "plan.yml"], line=1, kind="huge count")
    yield Case("count-over-flag", _plan("services:\n  a:\n    count: 11\n"),
               ["validate", "plan.yml", "--max-instances", "10"], line=3, kind="huge count")
    pad = "# " + "x" * 1000 + "\n"
    yield Case("plan-300k", _plan(pad * 300 + "services: {a: {}}\n"), ["validate", "plan.yml"],
               line=1, kind="huge file")
    yield Case("plan-1m-one-line", _plan("services: {a: {}}\n#" + "y" * 1_100_000 + "\n"),
               ["validate", "plan.yml"], line=1, kind="huge file")
    yield Case("script-600k",
               _plan("services:\n  a:\n    boot: s.sh\n", s_sh="echo x\n" * 100_000),
               ["validate", "plan.yml"], located="s.sh", line=1, kind="huge file")
    yield Case("flow-list-200k", _plan("vars:\n  l: [" + ",".join(["1"] * 120_000) + "]\n"
                                       "  bad: *nope\nservices: {a: {}}\n"),
               ["validate", "plan.yml"], kind="huge file")


def cycles() -> Iterator[Case]:
    for n in range(2, 51):
        rows = [f"  s{i}:\n    after: [s{(i + 1) % n}]\n" for i in range(n)]
        yield Case(f"cycle-after-{n}", _plan("services:\n" + "".join(rows)),
                   ["validate", "plan.yml"], line=2, kind="cycle")
    for n in (2, 3, 7, 20):
        rows = [f"  s{i}:\n    env:\n      NEXT: \"{{{{ s{(i + 1) % n}.address }}}}\"\n"
                for i in range(n)]
        yield Case(f"cycle-ref-{n}", _plan("services:\n" + "".join(rows)),
                   ["validate", "plan.yml"], line=2, kind="cycle")
    for n in (2, 5):
        rows = [f"  s{i}:\n    host: s{(i + 1) % n}\n" for i in range(n)]
        yield Case(f"cycle-host-{n}", _plan("services:\n" + "".join(rows)),
                   ["validate", "plan.yml"], line=2, kind="cycle")


GOOD_TEXT = "services:\n  a:\n    host: 127.0.0.1\n    ssh_port: 9\n    timeout: 1\n"
GOOD = _plan(GOOD_TEXT)
BAD_RUN_NAMES = ["../../x", "bad name/x", "", ".", "..", "-x", "_x", "a" * 64, "a\nb", "a/b",
                 "a;id", "$(id)", "`id`", "é", "a\u2028b", "run\t1", "~root", "a*", "/abs"]
# `--` so that a name starting with '-' reaches the RUN argument.
RUN_COMMANDS = [["status", "--"], ["repair", "--"], ["terminate", "--"], ["history", "--"],
                ["logs", "--"], ["clean", "--"], ["scale", "--", "{run}", "a", "1"],
                ["reload", "plan.yml", "--name", "{run}"]]


def hostile_command_lines() -> Iterator[Case]:
    for i, name in enumerate(BAD_RUN_NAMES):
        yield Case(f"runname-boot-{i}", dict(GOOD), ["boot", "plan.yml", "--name", name],
                   located=None, kind="run name")
        for cmd in RUN_COMMANDS:
            argv = [a.replace("{run}", name) for a in cmd] if "{run}" in " ".join(cmd) \
                else [*cmd, name]
            yield Case(f"runname-{cmd[0]}-{i}", dict(GOOD), argv, located=None, kind="run name")
    for i, arg in enumerate(["x" * 300 + ".yml", ("d" * 200 + "/") * 30 + "p.yml", "no/such.yml",
                             "nosuchplan", "a\nb.yml", "/"]):
        yield Case(f"plan-arg-{i}", dict(GOOD), ["validate", arg], located=None, kind="plan path")
    plan = _plan("vars: {n: 1, name: x}\nservices:\n  a:\n    count: \"{{ vars.n }}\"\n")
    bad_vars = {
        "unknown": ("nn=1", "plan.yml"), "unknown2": ("nme=x", "plan.yml"),
        "no-equals": ("n", None), "empty-key": ("=1", None), "negative": ("n=-1", "plan.yml"),
        "text": ("n=many", "plan.yml"), "float": ("n=1.5", "plan.yml"),
        "huge": ("n=" + "9" * 40, "plan.yml"), "template": ("n={{ cycler.__init__ }}", "plan.yml"),
        "shell": ("n=$(touch PWNED)", "plan.yml"), "newline": ("n=1\n2", "plan.yml"),
        "list": ("n=[1, 2]", "plan.yml"), "unknown-nl": ("a\nb=1", "plan.yml"),
    }
    for key, (var, located) in bad_vars.items():
        for cmd in (["validate", "plan.yml"], ["boot", "--dry-run", "plan.yml"]):
            yield Case(f"var-{key}-{cmd[0]}", dict(plan), [*cmd, "--var", var], located=located,
                       kind="var")


def _hostile_files(**files: str) -> dict[str, bytes]:
    return {"b.sh": b"true\n", **{k: v.encode() for k, v in files.items()}}


def hostile_file_names() -> Iterator[Case]:
    """Every field that names a file on this machine, given each kind of hostile name
    (tests/support/hostile.py): one line at the field's own line, exit 2, never a hang
    (a FIFO), an endless read (/dev/zero) or a walk of a folder where a file belongs."""
    for field_name, rows in FILE_FIELDS.items():
        for kind, value in HOSTILE.items():
            if (field_name, kind) == ("files", "folder"):
                continue  # `files:` may name a folder: it ships as a bundle
            lines = ["services:", "  a:", *("    " + r.format(v=_y(value)) for r in rows)]
            yield Case(f"file-{field_name}-{kind}",
                       _hostile_files(**{"plan.yml": "\n".join(lines) + "\n"}),
                       ["validate", "plan.yml"], line=len(lines), kind="hostile file name",
                       special=dict(SPECIAL_FILES))
    for key, conf in ORIGINAL_FIELDS.items():
        for kind, value in HOSTILE.items():
            rows = ORIGINAL[conf].splitlines()
            (at,) = [i for i, r in enumerate(rows) if r.startswith(f"{key}:")]
            rows[at] = f"{key}: {value}"
            files = {**ORIGINAL, conf: "\n".join(rows) + "\n"}
            yield Case(f"file-original-{key}-{kind}", _hostile_files(**files),
                       ["import", "top.conf", "-o", "out"], located=conf, line=at + 1,
                       kind="hostile file name", special=dict(SPECIAL_FILES),
                       absent=["out/plan.yml"])
    for kind, value in HOSTILE.items():
        yield Case(f"file-var-file-{kind}", _hostile_files(**{"plan.yml": GOOD_TEXT}),
                   ["validate", "plan.yml", "--var-file", value], located=None,
                   kind="hostile file name", special=dict(SPECIAL_FILES))
    # A var file is read as a plan is: the same nesting and alias limits, at its lines.
    for name, text, line in (("nested", "a: " + "[" * 5000 + "]" * 5000 + "\n", 1),
                             ("alias", "a: &x [1, 2]\nb: *x\n", 1)):
        yield Case(f"var-file-{name}", _hostile_files(**{"plan.yml": GOOD_TEXT,
                                                         "vars.yml": text}),
                   ["validate", "plan.yml", "--var-file", "vars.yml"], located="vars.yml",
                   line=line, kind="hostile file name")


def all_cases() -> list[Case]:
    cases = [*wrong_types(), *unknown_keys(), *alias_bombs(), *deep_nesting(), *bad_bytes(),
             *sandbox_escapes(), *huge(), *cycles(), *hostile_command_lines(),
             *hostile_file_names()]
    seen: set[str] = set()
    for case in cases:
        assert case.id not in seen, case.id
        seen.add(case.id)
    return cases
