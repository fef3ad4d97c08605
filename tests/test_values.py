"""Values of any size and byte reach scripts intact; what cannot travel is refused by name.

Real OpenSSH servers on 127.0.0.x (tests/support/sshd.py), as root and as a
sudo user; each script reports what it received through its export file.
"""

from __future__ import annotations

import hashlib
import os
import random
import string
from pathlib import Path

import pytest

from cloudinitd.errors import RemoteError
from cloudinitd.remote import SshTarget, close_all, remove_run_dir, run_step, wait_for_ssh
from cloudinitd.remote.script import ENV_STRING_MAX, env_file, is_shell, with_env_source
from cloudinitd.store import Store
from tests.support.cli import Cli, write_plan
from tests.support.sshd import SUDO_USER

RUN = f"values-{os.getpid()}"  # root's home is shared by concurrent test runs


@pytest.fixture(autouse=True)
def _close_sessions():
    yield
    close_all()


def _big(n: int, seed: int = 7) -> str:
    """`n` characters of shell-hostile text: quotes, $, backticks, newlines, non-ASCII."""
    rng = random.Random(seed)
    alphabet = string.ascii_letters + string.digits + " '\"$`\\!*?;&|<>(){}[]\n\té✓"
    return "".join(rng.choice(alphabet) for _ in range(n))


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture(params=["root", SUDO_USER])
def target(request, sshd_hosts, tmp_path):
    (host,) = sshd_hosts(1, user=request.param)
    t = SshTarget(address=host.address, port=host.port, user=host.user, key_path=host.key_path,
                  known_hosts=tmp_path / "known_hosts", label="svc-0")
    wait_for_ssh(t, timeout=15, service="svc")
    yield t
    remove_run_dir(t, RUN)


def _step(target: SshTarget, tmp_path: Path, script: str, env: dict[str, str],
          step: str = "boot"):
    return run_step(target, run=RUN, service="svc", index=0, step=step, script=script, env=env,
                    log_path=tmp_path / "logs" / f"svc-0.{step}.log", timeout=60)


SHELL_REPORT = """#!/bin/bash
set -eu
big_sha=$(printf '%s' "$BIG" | sha256sum | cut -d' ' -f1)
small_sha=$(printf '%s' "$SMALL" | sha256sum | cut -d' ' -f1)
child=$(sh -c 'printf %s "${SMALL:-unset}"' | sha256sum | cut -d' ' -f1)
echo "big=$big_sha" > "$CLOUDINITD_EXPORT"
echo "small=$small_sha" >> "$CLOUDINITD_EXPORT"
echo "child_small=$child" >> "$CLOUDINITD_EXPORT"
echo "line=$LINENO" >> "$CLOUDINITD_EXPORT"
"""


def test_a_200kb_env_value_reaches_a_shell_script_intact(target, tmp_path):
    big, small = _big(200 * 1024), _big(4000, seed=8)
    out = _step(target, tmp_path, SHELL_REPORT, {"BIG": big, "SMALL": small})
    assert out["big"] == _sha(big)
    assert out["small"] == _sha(small)
    # Values the kernel can pass on are exported to the programs the script starts ...
    assert out["child_small"] == _sha(small)
    # ... and the script's line numbers are the ones its author wrote.
    assert out["line"] == "9"


def test_env_values_never_appear_on_a_command_line(target, tmp_path):
    """The value travels in a file: no process on the host carries it in its arguments."""
    marker = "cmdline-canary-" + _big(20, seed=3).replace("\n", "_")
    script = """#!/bin/sh
found=no
for f in /proc/[0-9]*/cmdline; do
  if tr '\\0' ' ' < "$f" 2>/dev/null | grep -qF -- "$CANARY"; then found=yes; fi
done
echo "found=$found" > "$CLOUDINITD_EXPORT"
"""
    assert _step(target, tmp_path, script, {"CANARY": marker})["found"] == "no"


def test_python_scripts_get_values_that_fit_and_a_clear_refusal_for_larger(target, tmp_path):
    mid = _big(100 * 1024, seed=9)
    script = """#!/usr/bin/env python3
import hashlib, json, os
v = os.environ["MID"]
out = open(os.environ["CLOUDINITD_EXPORT"], "w")
json.dump({"sha": hashlib.sha256(v.encode()).hexdigest()}, out)
"""
    assert _step(target, tmp_path, script, {"MID": mid}) == {"sha": _sha(mid)}
    with pytest.raises(RemoteError) as err:
        _step(target, tmp_path, script, {"MID": _big(200 * 1024)})
    msg = str(err.value)
    assert "svc" in msg and "boot" in msg and "MID" in msg and "KiB" in msg


def test_a_nul_in_an_env_value_is_refused_before_anything_runs(target, tmp_path):
    with pytest.raises(RemoteError) as err:
        _step(target, tmp_path, "touch /nonexistent-never-runs\n", {"OK": "x", "BAD": "a\0b"},
              step="ready")
    msg = str(err.value)
    assert "svc" in msg and "ready" in msg and "BAD" in msg and "NUL" in msg
    assert not (tmp_path / "logs" / "svc-0.ready.log").exists() or \
        "touch" not in (tmp_path / "logs" / "svc-0.ready.log").read_text()


@pytest.mark.parametrize("writer", [
    "printf 'good=1\\nbad=a\\000b\\n' > \"$CLOUDINITD_EXPORT\"",
    "printf '{\"good\": 1, \"bad\": [\"x\", \"a\\\\u0000b\"]}' > \"$CLOUDINITD_EXPORT\"",
])
def test_exports_holding_a_nul_are_refused_naming_service_and_step(target, tmp_path, writer):
    with pytest.raises(RemoteError) as err:
        _step(target, tmp_path, writer + "\n", {})
    msg = str(err.value)
    assert msg.startswith("svc failed at step boot") or ("svc" in msg and "boot" in msg), msg
    assert "NUL" in msg and "export file" in msg
    assert "bad" in msg or "line 2" in msg


# --- through the engine --------------------------------------------------------------


def _on(host) -> str:
    return (f"    host: {host.address}\n    ssh_port: {host.port}\n"
            f"    ssh_key: {host.key_path}\n")


def test_a_200kb_export_flows_into_a_dependents_env(tmp_path, cli: Cli, sshd_hosts):
    out = tmp_path / "out"
    out.mkdir()
    a, b = sshd_hosts(2)
    text = (f"name: bigenv\nvars:\n  out: {out}\nservices:\n"
            "  maker:\n" + _on(a) + "    boot: make.sh.j2\n    exports: [blob]\n"
            "  user:\n" + _on(b) + "    boot: use.sh.j2\n    env:\n      BLOB: '{{ maker.blob }}'\n")
    plan = write_plan(tmp_path / "bigenv", text, {
        "make.sh.j2": """
            #!/usr/bin/env python3
            import json, os, random
            rng = random.Random(5)
            blob = "".join(rng.choice("ab'$`\\"\\n é") for _ in range(200 * 1024))
            json.dump({"blob": blob}, open(os.environ["CLOUDINITD_EXPORT"], "w"))
            """,
        "use.sh.j2": """
            #!/bin/bash
            set -eu
            printf '%s' "$BLOB" > {{ vars.out }}/blob
            """,
    })
    cli("boot", plan, "--name", "bigenv-1")
    stored = Store(cli.home).attributes("bigenv-1")[("maker", 0)]["blob"]
    assert len(stored) == 200 * 1024
    assert (out / "blob").read_bytes() == stored.encode()
    cli("terminate", "bigenv-1")


def test_a_nul_export_fails_the_service_with_its_name_and_step(tmp_path, cli: Cli, sshd_hosts):
    (a,) = sshd_hosts(1)
    text = ("name: nulexp\nservices:\n"
            "  maker:\n" + _on(a) + "    boot: make.sh\n    exports: [token]\n")
    plan = write_plan(tmp_path / "nulexp", text, {
        "make.sh": "printf 'token=ab\\000cd\\n' > \"$CLOUDINITD_EXPORT\"\n"})
    failed = cli("boot", plan, "--name", "nulexp-1", "--json", expect=1)
    svc = failed.json()["services"]["maker"]
    assert svc["state"] == "failed" and svc["step"] == "boot"
    assert "NUL" in svc["error"] and "maker" in svc["error"]
    assert Store(cli.home).attributes("nulexp-1") == {}
    cli("terminate", "nulexp-1")


def test_a_nul_in_a_plan_env_value_is_refused_at_its_line(tmp_path, cli: Cli, sshd_hosts):
    (a,) = sshd_hosts(1)
    text = ("name: nulenv\nservices:\n"
            "  svc:\n" + _on(a) + "    boot: b.sh\n    env:\n      FINE: ok\n"
            '      BAD: "a\\0b"\n')
    plan = write_plan(tmp_path / "nulenv", text, {"b.sh": "true\n"})
    res = cli("boot", plan, "--name", "nulenv-1", expect=None)
    assert res.code in (1, 2), res  # a refusal at load (2) or of the service (1)
    assert "Traceback" not in res.err
    assert f"{plan}:10" in res.err and "BAD" in res.err and "NUL" in res.err
    if res.code == 1:
        cli("terminate", "nulenv-1")


def test_env_file_is_private_and_holds_only_this_steps_values(target, tmp_path):
    script = 'ls -l "$(dirname "$CLOUDINITD_EXPORT")" > /dev/null\n'
    _step(target, tmp_path, script, {"SECRETISH": "v1"})
    home = Path(os.path.expanduser(f"~{target.user}"))
    env_path = home / ".cloudinitd-remote" / RUN / "svc-0" / "boot.env"
    assert oct(env_path.stat().st_mode & 0o777) == oct(0o600)
    assert "SECRETISH='v1'" in env_path.read_text() or "SECRETISH=v1" in env_path.read_text()


# --- the pure pieces -------------------------------------------------------------------


@pytest.mark.parametrize("argv,shell", [
    (["sh"], True), (["/bin/bash", "-e"], True), (["/usr/bin/env", "bash"], True),
    (["/usr/bin/env", "-S", "dash", "-x"], True), (["/usr/bin/env", "python3"], False),
    (["/usr/bin/python3"], False), (["/usr/bin/perl", "-w"], False),
])
def test_shell_interpreters_are_recognised(argv, shell):
    assert is_shell(argv) is shell


def test_env_file_exports_what_fits_and_keeps_larger_values_shell_local():
    small, big = "it's $HOME `x`", "y" * (ENV_STRING_MAX + 1)
    text = env_file({"SMALL": small, "BIG": big}, shell=True)
    lines = text.splitlines()
    assert lines[0].startswith("export SMALL=") and lines[1].startswith("BIG=")
    with pytest.raises(ValueError, match="BIG"):
        env_file({"BIG": big}, shell=False)
    with pytest.raises(ValueError, match="NUL"):
        env_file({"A": "\0"}, shell=True)
    with pytest.raises(ValueError, match="invalid environment variable name"):
        env_file({"A-B": "x"}, shell=True)


def test_sourcing_line_keeps_every_line_number():
    script = "#!/bin/sh\nset -e\necho two\n"
    out = with_env_source(script, "/w/boot.env")
    assert out.splitlines()[1:] == script.splitlines()[1:]
    assert out.startswith(". /w/boot.env; #!/bin/sh\n")
