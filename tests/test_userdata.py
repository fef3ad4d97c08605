"""User data and key names mean the same on every cloud, or are refused: the pure rules
(plan/userdata.py), plans (`user_data`, `user_data_base64`, `key_name` per cloud kind, exit 2
with FILE:LINE), the Auto Scaling actions (ValidationError), and qemu's merged seed.
Real launches: test_userdata_ec2.py (moto), test_userdata_lxc.py (LXC), test_userdata_qemu.py.
"""

from __future__ import annotations

import base64
import email
import gzip
import os
import textwrap
from pathlib import Path

import pytest
import yaml

import cloudinitd.testing  # noqa: F401  (registers the `memory` provider kind)
from cloudinitd.errors import PlanError, PlanErrors
from cloudinitd.plan import userdata
from cloudinitd.plan.loader import load_plan
from cloudinitd.providers.qemu import seed
from cloudinitd.service.actions import ACTIONS, Api
from cloudinitd.service.query import ApiError
from cloudinitd.service.state import ServiceState
from cloudinitd.store import Store
from tests.support.cli import Cli

SCRIPT = b"#!/bin/sh\necho hi\n"
CONFIG = b"#cloud-config\npackages: [htop]\n"


# -- the rules -------------------------------------------------------------------------

def test_gzip_is_inflated_whole_bounded_and_checked():
    assert userdata.inflate(gzip.compress(SCRIPT)) == SCRIPT
    assert userdata.inflate(gzip.compress(b"ab") + gzip.compress(b"cd")) == b"abcd"  # members
    bomb = gzip.compress(b"\0" * (userdata.MAX_INFLATED + 1))
    assert len(bomb) < userdata.MAX_BYTES  # fits what a cloud takes, inflates past the limit
    for bad, why in ((bomb, "inflates to more than"), (gzip.compress(SCRIPT)[:-9], "truncated"),
                     (b"\x1f\x8bnot gzip", "not valid gzip")):
        with pytest.raises(userdata.UserDataError, match=why):
            userdata.inflate(bad)
    assert userdata.content(SCRIPT) == SCRIPT  # not gzip: itself


@pytest.mark.parametrize("data, applies, ok", [
    (bytes(range(256)), "any", True),  # EC2: any bytes, the image's agent decides
    (b"x" * 16385, "any", False),
    (SCRIPT, "script", True),
    (gzip.compress(SCRIPT), "script", True),
    (CONFIG, "script", False),
    (gzip.compress(CONFIG), "script", False),
    (CONFIG, "cloud-init", True),
    (gzip.compress(b"Content-Type: multipart/mixed\nMIME-Version: 1.0\n\n"), "cloud-init", True),
    (b"plain words", "cloud-init", False),
    (bytes(range(256)), "cloud-init", False),
    (SCRIPT, "", False),  # a kind that applies none
])
def test_what_each_kind_takes(data, applies, ok):
    assert (userdata.problem(data, applies) is None) == ok


def test_problems_never_quote_the_data():
    secret = b"#cloud-config\npassword: hunter2-private\n"
    assert "hunter2" not in (userdata.problem(secret, "script") or "x")


def test_merged_keeps_the_callers_parts_first_and_exact():
    callers = email.message_from_bytes(userdata.merged(None, [("a", SCRIPT, None)]))
    data = gzip.compress(callers.as_bytes())
    merged = email.message_from_bytes(userdata.merged(data, [("ours", CONFIG, "list(append)")]))
    parts = [p for p in merged.walk() if not p.is_multipart()]
    assert [p.get_payload(decode=True) for p in parts] == [SCRIPT, CONFIG]
    assert parts[1]["Merge-Type"] == "list(append)"
    binary = bytes(range(256))
    (only, _) = [p for p in email.message_from_bytes(
        userdata.merged(binary, [("o", CONFIG, None)])).walk() if not p.is_multipart()]
    assert only.get_payload(decode=True) == binary


def nested_mime(depth: int) -> bytes:
    """A script inside `depth` multiparts, each inside the one before."""
    text = b"MIME-Version: 1.0\n"
    for i in range(depth):
        text += b'Content-Type: multipart/mixed; boundary="b%d"\n\n--b%d\n' % (i, i)
    text += b"Content-Type: text/x-shellscript\n\n" + SCRIPT
    for i in reversed(range(depth)):
        text += b"\n--b%d--\n" % i
    return text


@pytest.mark.parametrize(("depth", "ok"), [(3, True), (userdata.MAX_MIME_DEPTH, True),
                                           (userdata.MAX_MIME_DEPTH + 1, False),
                                           (1000, False)])  # past Python's recursion limit
def test_mime_nested_past_the_limit_is_refused_not_a_recursion_error(depth, ok):
    data = gzip.compress(nested_mime(depth), mtime=0)
    assert len(data) <= userdata.MAX_BYTES  # 1000 levels fit 16 KB of gzip
    said = userdata.problem(data, "cloud-init")
    assert (said is None) == ok, said
    if ok:
        parts = [p for p in email.message_from_bytes(userdata.merged(data, [("o", CONFIG, None)]))
                 .walk() if not p.is_multipart()]
        assert [p.get_payload(decode=True) for p in parts] == [SCRIPT, CONFIG]
        return
    assert said == f"nests MIME multiparts deeper than {userdata.MAX_MIME_DEPTH} levels"
    with pytest.raises(userdata.UserDataError):  # an ec2 lease's merge, which `any` lets through
        userdata.merged(data, [("o", CONFIG, None)])


def test_within_limit_gzips_a_merged_whole_only_when_needed():
    small = b"x" * 100
    assert userdata.within_limit(small) == small
    big = b"#!/bin/sh\n" + b"echo same line\n" * 2000
    packed = userdata.within_limit(big)
    assert packed[:2] == userdata.GZIP_MAGIC and gzip.decompress(packed) == big
    with pytest.raises(userdata.UserDataError):
        userdata.within_limit(os.urandom(20000))  # random bytes do not compress


# -- plans ----------------------------------------------------------------------------

def write(folder: Path, text: str) -> Path:
    path = folder / "plan.yml"
    path.write_text(textwrap.dedent(text))
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises((PlanError, PlanErrors)) as info:
        load_plan(path)
    found = info.value.errors if isinstance(info.value, PlanErrors) else [info.value]
    return [str(e) for e in found]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_user_data_base64_gives_exact_bytes_and_text_stays_text(tmp_path):
    data = gzip.compress(SCRIPT)
    plan = load_plan(write(tmp_path, f"""
        services:
          a: {{user_data_base64: "{b64(data)[:10]}\\n  {b64(data)[10:]}"}}
          b: {{user_data: "#!/bin/sh\\necho é\\n"}}
          c: {{cloud: qemu, user_data: "#cloud-config\\n"}}
    """))
    assert plan.services["a"].options == {"user_data": data}  # line breaks allowed
    assert plan.services["b"].options == {"user_data": "#!/bin/sh\necho é\n".encode()}
    assert plan.services["c"].options == {"user_data": b"#cloud-config\n"}


@pytest.mark.parametrize("service, expect", [
    ('{user_data: "#cloud-config\\n"}', "user_data on cloud 'local' (local) must be a script"),
    (f'{{user_data_base64: "{b64(gzip.compress(CONFIG))}"}}', "must be a script starting"),
    (f'{{user_data_base64: "{b64(gzip.compress(bytes(2 << 20)))}"}}', "inflates to more"),
    ('{user_data_base64: "!!hunter2"}', "user_data_base64 is not base64"),
    (f'{{user_data_base64: "{b64(b"x" * 16385)}"}}', "16385 bytes; at most 16384"),
    ('{key_name: mine}', "key_name on cloud 'local' (local): this cloud has no key pairs"),
    ('{cloud: qemu, key_name: mine}', "key_name on cloud 'qemu' (qemu): this cloud has no key"),
    ('{cloud: qemu, user_data: "just words"}', "is not a format cloud-init runs"),
    ('{user_data: "#!/bin/sh", user_data_base64: "IyE="}', "not both"),
])
def test_what_a_cloud_cannot_apply_is_refused_at_load(tmp_path, service, expect):
    found = problems(write(tmp_path, f"""
        services:
          a: {service}
    """))
    assert any(expect in p and "plan.yml:3" in p for p in found), found
    assert not any("hunter2" in p for p in found)


def test_an_ec2_cloud_takes_any_bytes_and_key_names(tmp_path):
    plan = load_plan(write(tmp_path, f"""
        clouds: {{aws: {{provider: ec2}}}}
        services:
          a: {{cloud: aws, key_name: mine, user_data_base64: "{b64(bytes(range(256)))}"}}
    """))
    assert plan.services["a"].options == {"key_name": "mine", "user_data": bytes(range(256))}


def test_validate_says_it_in_one_line_with_exit_2(tmp_path):
    path = write(tmp_path, """
        services:
          a:
            user_data: "#cloud-config\\npassword: hunter2-private\\n"
    """)
    res = Cli(tmp_path / "home")("validate", path, expect=2)
    lines = [line for line in res.err.splitlines() if line.strip()]
    assert len(lines) == 1 and "plan.yml:4" in lines[0] and "must be a script" in lines[0]
    assert "hunter2" not in res.err + res.out and "Traceback" not in res.err


# -- the Auto Scaling actions ------------------------------------------------------------

@pytest.fixture
def api(tmp_path: Path) -> Api:
    home = tmp_path / "home"
    home.mkdir()
    (home / "clouds.yml").write_text("l: {provider: local}\nq: {provider: qemu}\n"
                                     "e: {provider: ec2, region: us-east-1}\n")
    return Api(home=home, store=Store(home), state=ServiceState(home))


def create(api: Api, cloud: str, name: str = "lc", **params: str) -> None:
    ACTIONS["CreateLaunchConfiguration"](api, "alice", {
        "LaunchConfigurationName": f"{name}@{cloud}", "ImageId": "debian-12",
        "InstanceType": "small", **params})


def refusal(api: Api, cloud: str, **params: str) -> str:
    with pytest.raises(ApiError) as err:
        create(api, cloud, **params)
    assert err.value.code == "ValidationError"
    return err.value.message


def described(api: Api) -> dict[str, bytes]:
    result = ACTIONS["DescribeLaunchConfigurations"](api, "alice", {})
    return {m.findtext("LaunchConfigurationName"): base64.b64decode(m.findtext("UserData"))
            for m in result.find("LaunchConfigurations")}


def test_serve_refuses_what_a_local_cloud_would_ignore(api):
    assert "must be a script" in refusal(api, "l", UserData=b64(CONFIG))
    assert "has no key pairs" in refusal(api, "l", KeyName="mine")
    assert "has no key pairs" in refusal(api, "q", KeyName="mine")
    assert "not a format cloud-init runs" in refusal(api, "q", UserData=b64(b"\0\1binary"))
    assert described(api) == {}


def test_serve_keeps_gzip_and_binary_user_data_as_sent(api):
    packed, config, binary = gzip.compress(SCRIPT), gzip.compress(CONFIG), bytes(range(256))
    create(api, "l", UserData=b64(packed))
    create(api, "q", UserData=b64(config))
    create(api, "e", UserData=b64(binary), KeyName="mine")
    assert described(api) == {"lc@l": packed, "lc@q": config, "lc@e": binary}


# -- qemu's seed ------------------------------------------------------------------------

def seed_spec(data: bytes | None, apt_proxy: str | None = "http://10.0.0.1:3142") -> seed.SeedSpec:
    import ipaddress
    return seed.SeedSpec(instance_id="qemu-1", hostname="vm-0", ssh_user="root",
                         ssh_public_key="ssh-ed25519 AAAA k", address="10.0.0.5",
                         network=ipaddress.IPv4Network("10.0.0.0/24"), gateway="10.0.0.1",
                         mac="52:54:00:00:00:01", apt_proxy=apt_proxy, user_data=data)


def test_qemu_seed_without_user_data_is_the_projects_own():
    assert seed.seed_user_data(seed_spec(None)) == seed.user_data(seed_spec(None)).encode()
    assert "cloud_init_modules" not in yaml.safe_load(seed.user_data(seed_spec(None)))


def test_qemu_seed_merges_the_callers_gzip_script_before_its_own():
    data = seed.seed_user_data(seed_spec(gzip.compress(SCRIPT)))
    parts = [p for p in email.message_from_bytes(data).walk() if not p.is_multipart()]
    assert [p.get_content_type() for p in parts] == ["text/x-shellscript", "text/cloud-config",
                                                     "text/cloud-config"]
    assert parts[0].get_payload(decode=True) == SCRIPT
    lists, rest = (yaml.safe_load(p.get_payload(decode=True)) for p in parts[1:])
    assert lists["ssh_authorized_keys"] == ["ssh-ed25519 AAAA k"]
    # The image runs only the init stage: it must also run the user's scripts and runcmd.
    assert {"scripts_user", "runcmd", "write_files", "ssh"} <= set(lists["cloud_init_modules"])
    assert parts[1]["Merge-Type"] == seed.LIST_MERGE and parts[2]["Merge-Type"] is None
    assert rest["hostname"] == "vm-0" and "write_files" in lists and not set(lists) & set(rest)
    whole = {**lists, **rest}
    assert whole == yaml.safe_load(seed.user_data(seed_spec(gzip.compress(SCRIPT))))
