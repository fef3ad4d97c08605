"""Every program the code and the tests call is installed by scripts/install-system-deps.sh.

A fresh Debian 12 machine has only its `required` packages; anything else a
provider or a test runs must come from the project's own package list, or
`make test` fails there (it did: `sudo` was missing). The programs are found
by reading the code (an AST walk over subprocess calls, `shutil.which`, the
project's own command wrappers and the argv lists they are given), plus a
short list of those the code builds as remote command text; each must
resolve on the system PATH to a file that dpkg says a listed package (or a
package every Debian system has, or one a listed package pulls in) owns.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "install-system-deps.sh"
SCANNED = ("cloudinitd", "tests", "bench")
# Where a fresh root login finds programs (no pyenv shims, no venv).
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Functions whose first argument is a program or an argv list.
RUNNERS = {"run", "Popen", "check_output", "check_call", "call", "which", "_run", "_lxc"}
# Variables that hold an argv list before it is run.
ARGV_NAMES = {"cmd", "argv", "command", "args"}
PROGRAM = re.compile(r"^(/[\w./+-]+|[A-Za-z][\w.+-]*)$")
# Called through command text the code builds (not visible as argv lists).
BUILT = {
    "sh": "remote steps run under sh (remote/script.py build_command)",
    "timeout": "the remote step time limit (remote/script.py)",
    "sudo": "steps for non-root logins (remote/steps.py); the sudo test user",
    "cat": "reading an export file through sudo (remote/steps.py)",
    "rm": "removing a run's remote folder (remote/steps.py)",
    "rmdir": "removing a run's remote folder (remote/steps.py)",
    "kill": "killing a step after its deadline (remote/steps.py)",
    "unshare": "the noexec-/tmp test sshd (tests/support/sshd.py)",
    "mount": "the noexec-/tmp test sshd (tests/support/sshd.py)",
    "python3": "`make venv`, and test scripts run on the sshd hosts (#!/usr/bin/env python3)",
}
# Alternatives of which one is enough (`genisoimage or mkisofs`).
ANY_OF = [{"cloud-localds", "genisoimage", "mkisofs"}]
NOT_PROGRAMS = {"local", "text"}  # click.Choice values caught by the argv heuristic


def listed_packages() -> set[str]:
    text = SCRIPT.read_text()
    match = re.search(r'^PACKAGES="(.*?)"', text, re.S | re.M)
    assert match, f"{SCRIPT} has no PACKAGES=\"...\" block"
    return set(match.group(1).split())


def _constants(tree: ast.AST) -> dict[str, str]:
    out = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) \
                and isinstance(node.value.value, str):
            for t in node.targets:
                if isinstance(t, ast.Name) and t.id.isupper():
                    out[t.id] = node.value.value
    return out


def _first(node: ast.AST) -> ast.AST | None:
    if isinstance(node, ast.List | ast.Tuple):
        return node.elts[0] if node.elts else None
    return node


def called_programs() -> dict[str, str]:
    """program -> first place it is called, from every Python file in SCANNED."""
    trees = [(p, ast.parse(p.read_text())) for d in SCANNED for p in sorted((ROOT / d).rglob("*.py"))]
    consts: dict[str, str] = {}
    for _, tree in trees:
        consts.update(_constants(tree))
    found: dict[str, str] = {}

    def note(node: ast.AST | None, where: str) -> None:
        value = None
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            value = node.value.split()[0] if node.value.strip() else None
        elif isinstance(node, ast.Name | ast.Attribute):
            value = consts.get(node.id if isinstance(node, ast.Name) else node.attr)
        if value and PROGRAM.match(value) and value not in NOT_PROGRAMS:
            found.setdefault(value, where)

    for path, tree in trees:
        rel = path.relative_to(ROOT)
        # A local variable named like a runner (`run = Session(home)`) runs no program.
        rebound = {t.id for n in ast.walk(tree) if isinstance(n, ast.Assign)
                   for t in n.targets if isinstance(t, ast.Name)}
        for node in ast.walk(tree):
            where = f"{rel}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Call) and node.args:
                f = node.func
                if isinstance(f, ast.Attribute):
                    # subprocess.run / shutil.which, not some object's own `run` method
                    module = f.value.id if isinstance(f.value, ast.Name) else None
                    if f.attr in RUNNERS and module in ("subprocess", "shutil"):
                        note(_first(node.args[0]), where)
                elif isinstance(f, ast.Name) and f.id in RUNNERS and f.id not in rebound:
                    note(_first(node.args[0]), where)
            elif (isinstance(node, ast.Assign) and isinstance(node.value, ast.List | ast.Tuple)
                  and any(isinstance(t, ast.Name) and t.id in ARGV_NAMES for t in node.targets)):
                note(_first(node.value), where)
    return found


def _forms(path: str) -> list[str]:
    """`path` as found, resolved, and in the /bin <-> /usr/bin forms of usrmerge."""
    candidates = [path, os.path.realpath(path)]
    for p in list(candidates):
        for a, b in (("/usr/bin/", "/bin/"), ("/usr/sbin/", "/sbin/")):
            if p.startswith(a):
                candidates.append(b + p[len(a):])
            elif p.startswith(b):
                candidates.append(a + p[len(b):])
    return list(dict.fromkeys(candidates))


def owners(paths: list[str]) -> dict[str, str]:
    """path -> the package dpkg says owns it (one dpkg-query call for them all)."""
    forms = {p: _forms(p) for p in paths}
    every = sorted({f for fs in forms.values() for f in fs})
    res = subprocess.run(["dpkg-query", "-S", *every], capture_output=True, text=True)
    owner_of = {}
    for line in res.stdout.splitlines():
        if line.startswith("diversion by"):  # "diversion by dash from: /bin/sh"
            continue
        pkgs, _, path = line.partition(": ")
        owner_of[path.strip()] = pkgs.split(",")[0].strip()
    return {p: next((owner_of[f] for f in fs if f in owner_of), None) for p, fs in forms.items()}


def _query(packages: set[str], fmt: str) -> dict[str, str]:
    res = subprocess.run(["dpkg-query", "-W", "-f", "${Package}\\t" + fmt + "\\n", *packages],
                         capture_output=True, text=True)
    out = {}
    for line in res.stdout.splitlines():
        name, _, value = line.partition("\t")
        out[name] = value
    return out


def _depends(packages: set[str]) -> set[str]:
    """Packages named in the Depends / Pre-Depends of `packages` (installed ones)."""
    names = set()
    for value in _query(packages, "${Depends}, ${Pre-Depends}").values():
        for alt in re.split(r"[,|]", value):
            name = alt.strip().split(" ")[0].split(":")[0]
            if name:
                names.add(name)
    return names


def provided_packages() -> set[str]:
    """Listed packages and what they pull in (two levels deep)."""
    listed = listed_packages()
    first = _depends(listed)
    return listed | first | _depends(first - listed)


def on_every_debian(packages: set[str]) -> set[str]:
    """Those of `packages` that are Essential or of Priority required."""
    return {name for name, fields in _query(packages, "${Essential} ${Priority}").items()
            if fields.split()[:1] == ["yes"] or "required" in fields.split()}


def test_sudo_is_listed():
    assert "sudo" in listed_packages()


def test_the_scan_finds_the_programs_it_must():
    """Guards the scanner itself: programs known to be called are found."""
    found = called_programs()
    for prog in ("lxc-start", "lxc-info", "debootstrap", "ip", "qemu-img", "ssh-keygen",
                 "/usr/sbin/sshd", "qemu-system-x86_64", "mkfs.ext4", "dot", "visudo",
                 "losetup", "umount"):
        assert prog in found, prog


def test_every_called_program_comes_from_a_listed_package():
    if shutil.which("dpkg-query") is None:
        pytest.fail("dpkg-query is missing: this check needs a Debian system", pytrace=False)
    programs = {**called_programs(), **{p: f"built: {why}" for p, why in BUILT.items()}}
    provided = provided_packages()
    problems = []
    alternatives = {p for group in ANY_OF for p in group}
    paths = {}
    for prog, where in sorted(programs.items()):
        path = prog if prog.startswith("/") else shutil.which(prog, path=SYSTEM_PATH)
        if path is not None and os.path.exists(path):
            paths[prog] = path
        elif prog not in alternatives:
            problems.append(f"{prog} ({where}): not installed on this machine")
    owner = owners(list(paths.values()))
    base = on_every_debian({o for o in owner.values() if o})
    resolved: dict[str, str] = {}
    for prog, path in paths.items():
        pkg, where = owner[path], programs[prog]
        if pkg is None:
            problems.append(f"{prog} ({where}): {path} belongs to no Debian package")
        elif pkg not in provided and pkg not in base:
            problems.append(f"{prog} ({where}): package {pkg} is not in {SCRIPT.name}")
        else:
            resolved[prog] = pkg
    for group in ANY_OF:
        if not group & set(resolved):
            problems.append(f"none of {sorted(group)} comes from a listed package")
    assert not problems, "\n".join(problems)
