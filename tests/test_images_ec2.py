"""`cloudinitd image` on an EC2 test cloud (moto serves EC2 and S3 in one server process).

Staged files go to the cloud's S3 store under the Nimbus/Cumulus convention
BUCKET/PREFIX/CANONICAL_ID/NAME. `image test` boots its instance on a real
loopback sshd (the test cloud hands that host's address out for it); the
other instances here run no scripts and are never contacted.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.cli import BIN, write_plan
from tests.support.testcloud import TestCloud
from tests.test_ec2_e2e import AK_ENV, SK_ENV, assert_no_secret, ec2cli  # noqa: F401

CANONICAL = "c0ffee42"
PART = 5 * 1024 * 1024  # S3's (and moto's) smallest part


def catalog(home: Path, cloud: TestCloud, name: str = "t") -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "clouds.yml").write_text(
        f"{name}:\n"
        "  provider: ec2\n"
        f"  endpoint: {cloud.endpoint}\n"
        "  region: us-east-1\n"
        f"  credentials: {{access_key_env: {AK_ENV}, secret_key_env: {SK_ENV}}}\n"
        f"  storage: {{canonical_id: {CANONICAL}, part_size: {PART}}}\n"
    )


def disk(path: Path, size: int) -> bytes:
    data = random.Random(size).randbytes(size)
    path.write_bytes(data)
    return data


def owned(cloud: TestCloud, name: str | None = None) -> list[dict]:
    params: dict = {"Owners": ["self"]}
    if name:
        params["Filters"] = [{"Name": "name", "Values": [name]}]
    return cloud.client().describe_images(**params)["Images"]


def objects(cloud: TestCloud) -> list[str]:
    s3 = cloud.s3()
    if "Repo" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        return []
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="Repo").get("Contents", [])]
    uploads = [u["Key"] for u in s3.list_multipart_uploads(Bucket="Repo").get("Uploads", [])]
    return keys + [f"upload:{k}" for k in uploads]


def boot_by_name(tmp_path: Path, ec2cli, image: str, run: str) -> str:  # noqa: F811
    plan = write_plan(tmp_path / run, f"""
        name: byname
        defaults:
          cloud: t
          image: {image}
        services:
          web: {{}}
    """)
    assert ec2cli("boot", plan, "--name", run, "--json").json()["ok"] is True
    return plan


def test_stage_register_boot_by_name_then_delete(tmp_path, ec2_cloud, ec2cli):  # noqa: F811
    cloud = ec2_cloud("img")
    catalog(ec2cli.home, cloud)
    data = disk(tmp_path / "small.raw", 2 * PART + 12345)
    res = ec2cli("image", "stage", tmp_path / "small.raw", "--cloud", "t", "--name", "myvm",
                 "--json")
    staged = res.json()
    key = f"VMS/{CANONICAL}/myvm"
    assert staged["key"] == key and staged["bucket"] == "Repo"
    assert staged["url"] == f"cumulus://127.0.0.1:{cloud.port}/Repo/{key}"
    assert staged["format"] == "raw" and staged["parts"] == 3 and staged["resumed"] is False
    assert cloud.s3().get_object(Bucket="Repo", Key=key)["Body"].read() == data
    [image] = owned(cloud, "myvm")
    assert image["ImageId"] == staged["image_id"]

    listed = ec2cli("image", "list", "--cloud", "t", "--json").json()["images"]
    assert [(i["name"], i["image_id"], i["size"]) for i in listed] == [
        ("myvm", staged["image_id"], len(data))
    ]
    assert listed[0]["created"]

    boot_by_name(tmp_path, ec2cli, "myvm", "bn")
    [inst] = cloud.live_instances("bn")
    assert inst["ImageId"] == staged["image_id"]
    ec2cli("terminate", "bn", "--json")

    gone = ec2cli("image", "delete", "myvm", "--cloud", "t", "--json").json()
    assert gone["deregistered"] == [staged["image_id"]] and gone["object_deleted"] is True
    assert owned(cloud) == [] and objects(cloud) == []
    # Unknown names now: a clear error, and boot by that name fails instead of guessing.
    res = ec2cli("image", "delete", "myvm", "--cloud", "t", expect=2)
    assert "no image named 'myvm'" in res.err
    assert_no_secret(ec2cli.home, res.out, res.err, *(str(x) for x in listed))


def test_interrupted_upload_resumes_only_missing_parts(tmp_path, ec2_cloud, ec2cli):  # noqa: F811
    cloud = ec2_cloud("res")
    catalog(ec2cli.home, cloud)
    data = disk(tmp_path / "big.raw", 3 * PART + 777)
    # The second UploadPart fails (400: botocore does not retry it): part 1 is stored.
    cloud.arm("InvalidRequest", count=1, status=400, action="UploadPart", after=1)
    res = ec2cli("image", "stage", tmp_path / "big.raw", "--cloud", "t", "--name", "big",
                 "--json", expect=1)
    assert "UploadPart" in res.err and "InvalidRequest" in res.err
    assert owned(cloud) == [] and objects(cloud) == [f"upload:VMS/{CANONICAL}/big"]
    before = cloud.calls("UploadPart")
    assert before == 2

    staged = ec2cli("image", "stage", tmp_path / "big.raw", "--cloud", "t", "--name", "big",
                    "--json").json()
    assert staged["resumed"] is True and staged["parts"] == 4
    assert staged["uploaded_parts"] == [2, 3, 4]
    assert cloud.calls("UploadPart") - before == 3
    key = f"VMS/{CANONICAL}/big"
    assert cloud.s3().get_object(Bucket="Repo", Key=key)["Body"].read() == data
    assert objects(cloud) == [key]
    ec2cli("image", "delete", "big", "--cloud", "t", "--json")
    assert objects(cloud) == [] and owned(cloud) == []


def test_save_instance_then_boot_it_by_name(tmp_path, ec2_cloud, ec2cli):  # noqa: F811
    cloud = ec2_cloud("save")
    catalog(ec2cli.home, cloud)
    boot_by_name(tmp_path, ec2cli, "ami-12345678", "orig")
    [inst] = cloud.live_instances("orig")
    saved = ec2cli("image", "save", "orig", "web", "golden", "--json").json()
    assert saved["instance_id"] == inst["InstanceId"] and saved["stopped"] is False
    [image] = owned(cloud, "golden")
    assert image["State"] == "available" and image["ImageId"] == saved["image_id"]
    tags = {t["Key"]: t["Value"] for t in image.get("Tags", [])}
    assert tags["cloudinitd:run"] == "orig"
    assert len(cloud.live_instances("orig")) == 1  # it keeps running without --stop
    events = ec2cli("history", "orig", "--json").json()["events"]
    assert any(e["kind"] == "image" and saved["image_id"] in e["message"] for e in events)
    # The same name again is refused, not a second image.
    ec2cli("image", "save", "orig", "web/0", "golden", expect=1)

    boot_by_name(tmp_path, ec2cli, "golden", "copy")
    [copy] = cloud.live_instances("copy")
    assert copy["ImageId"] == saved["image_id"]
    ec2cli("image", "save", "copy", "web/0", "golden2", "--stop", "--json")
    assert cloud.live_instances("copy") == []
    ec2cli("terminate", "orig", "--json")


def test_boot_unknown_image_name_fails_clearly(tmp_path, ec2_cloud, ec2cli):  # noqa: F811
    cloud = ec2_cloud("unk")
    catalog(ec2cli.home, cloud)
    plan = write_plan(tmp_path / "p", """
        name: unk
        defaults: {cloud: t, image: nosuch}
        services:
          web: {}
    """)
    res = ec2cli("boot", plan, "--name", "unk", "--json", expect=1)
    assert "no image named 'nosuch'" in res.out + res.err
    assert cloud.live_instances() == []


@pytest.mark.slow
def test_image_test_discard_leaves_nothing(tmp_path, ec2_cloud, ec2cli, sshd_hosts):  # noqa: F811
    [host] = sshd_hosts(1)
    cloud = ec2_cloud("tv")
    cloud.set_pool([host.address])
    catalog(ec2cli.home, cloud)
    disk(tmp_path / "try.raw", PART + 10)
    check = tmp_path / "check.sh"
    check.write_text("set -e\ntest -d /\necho image-ok\n")
    res = ec2cli("image", "test", tmp_path / "try.raw", "--cloud", "t", "--name", "try",
                 "--discard", "--check", check, "--ssh-key", host.key_path,
                 "--ssh-port", str(host.port), "--json")
    out = res.json()
    assert out["address"] == host.address and out["check"] == "passed"
    assert out["kept"] is False and out["undone"] == ["run", "stage"]
    assert f"-p {host.port}" in out["ssh"] and host.address in out["ssh"]
    assert owned(cloud) == [] and objects(cloud) == [] and cloud.live_instances() == []
    assert_no_secret(ec2cli.home, res.out, res.err)


@pytest.mark.slow
def test_image_test_failing_check_without_tty_cleans_up(
    tmp_path, ec2_cloud, ec2cli, sshd_hosts  # noqa: F811
):
    [host] = sshd_hosts(1)
    cloud = ec2_cloud("tf")
    cloud.set_pool([host.address])
    catalog(ec2cli.home, cloud)
    disk(tmp_path / "bad.raw", 1000)
    check = tmp_path / "check.sh"
    check.write_text("echo broken >&2\nexit 3\n")
    res = ec2cli("image", "test", tmp_path / "bad.raw", "--cloud", "t", "--check", check,
                 "--ssh-key", host.key_path, "--ssh-port", str(host.port), expect=1)
    assert "did not pass the check" in res.err
    assert owned(cloud) == [] and objects(cloud) == [] and cloud.live_instances() == []


@pytest.mark.slow
def test_image_test_keep_without_flag_no_tty_discards(
    tmp_path, ec2_cloud, ec2cli, sshd_hosts  # noqa: F811
):
    [host] = sshd_hosts(1)
    cloud = ec2_cloud("tk")
    cloud.set_pool([host.address])
    catalog(ec2cli.home, cloud)
    disk(tmp_path / "k.raw", 1000)
    res = ec2cli("image", "test", tmp_path / "k.raw", "--cloud", "t", "--ssh-key",
                 host.key_path, "--ssh-port", str(host.port))
    assert "no --keep/--discard: discarding" in res.out
    assert owned(cloud) == [] and objects(cloud) == [] and cloud.live_instances() == []
    disk(tmp_path / "k.raw", 1000)
    res = ec2cli("image", "test", tmp_path / "k.raw", "--cloud", "t", "--keep", "--ssh-key",
                 host.key_path, "--ssh-port", str(host.port), "--json")
    assert res.json()["kept"] is True
    assert [i["Name"] for i in owned(cloud)] == ["k.raw"] and cloud.live_instances() == []


@pytest.mark.slow
@pytest.mark.parametrize("action", ["UploadPart", "RunInstances"])
def test_image_test_ctrl_c_leaves_nothing(tmp_path, ec2_cloud, ec2cli, action):  # noqa: F811
    """SIGINT while uploading or while the instance launches: everything taken is undone."""
    cloud = ec2_cloud("cc")
    catalog(ec2cli.home, cloud)
    disk(tmp_path / "c.raw", 2 * PART + 5)
    cloud.client().describe_regions()  # warm moto so the interrupt lands in the held answer
    cloud.slow(action, delay=6)
    proc = subprocess.Popen(
        [str(BIN / "cloudinitd"), "image", "test", str(tmp_path / "c.raw"), "--cloud", "t",
         "--discard", "--json"],
        env=ec2cli.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while cloud.calls(action) < 1:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, f"no {action} call seen"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    assert proc.returncode == 130, err
    assert "Unstaging c.raw" in err
    assert owned(cloud) == [] and objects(cloud) == [] and cloud.live_instances() == []


def test_bad_storage_entry_is_a_clean_usage_error(tmp_path, ec2cli):  # noqa: F811
    ec2cli.home.mkdir(parents=True)
    (ec2cli.home / "clouds.yml").write_text(
        "t:\n"
        "  provider: ec2\n"
        "  endpoint: http://127.0.0.1:9\n"
        "  storage: {bucket: Repo, prefixx: VMS}\n"
    )
    disk(tmp_path / "x.raw", 10)
    res = ec2cli("image", "stage", tmp_path / "x.raw", "--cloud", "t", expect=2)
    assert "clouds.yml:4:" in res.err and "unknown key 'prefixx' in storage" in res.err
    assert "Traceback" not in res.err
    # The catalog is checked whole when loaded: mend it before the next cases.
    (ec2cli.home / "clouds.yml").write_text(
        "t:\n  provider: ec2\n  endpoint: http://127.0.0.1:9\n  storage: {bucket: Repo}\n"
    )
    res = ec2cli("image", "stage", tmp_path / "x.raw", "--cloud", "nope", expect=2)
    assert "no cloud 'nope' in the catalog (known: local, qemu, t)" in res.err
    res = ec2cli("image", "stage", tmp_path / "missing.raw", "--cloud", "t", expect=2)
    assert "no such image file" in res.err
