"""`cloudinitd image` on qemu clouds: save a VM's disk, boot a VM from it; stage disk files.

One VM boot, one save, one boot (under TCG each boot takes minutes). The
images go to the shared image cache under names of this test's own,
removed at the end.
"""

from __future__ import annotations

import json
import secrets
import subprocess
from pathlib import Path

import pytest

from tests.support.cli import Cli
from tests.support.images import web_address, web_plan
from tests.support.lxc import ssh
from tests.support.qemu import destroy_all, image_cache

pytestmark = [pytest.mark.qemu]


@pytest.mark.slow
def test_save_a_vm_disk_and_boot_a_vm_from_it(qemu_net, tmp_path: Path):
    cli = Cli(tmp_path / "home")
    name = f"q{secrets.token_hex(3)}"
    marker = secrets.token_hex(8)
    try:
        cli("boot", web_plan(tmp_path / "orig", "orig", "qemu"), "--name", "orig", timeout=1500)
        key = cli.home / "runs" / "orig" / "id_ed25519"
        # Written and not synced: `image save` flushes the guest's page cache first.
        made = ssh(web_address(cli, "orig"), key, f"echo {marker} > /root/marker")
        assert made.returncode == 0, made.stderr
        # Someone else's keys: an account with a key, and a second keys file for root.
        alice_key = tmp_path / "alice"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(alice_key)],
                       check=True)
        public = (tmp_path / "alice.pub").read_text().strip()
        made = ssh(web_address(cli, "orig"), key, (
            "useradd -m alice && install -d -m 700 -o alice -g alice /home/alice/.ssh && "
            f"echo '{public}' | tee /root/.ssh/authorized_keys2 "
            "> /home/alice/.ssh/authorized_keys && chown alice: /home/alice/.ssh/* && sync"))
        assert made.returncode == 0, made.stderr
        assert ssh(web_address(cli, "orig"), alice_key, "true", user="alice").returncode == 0

        saved = cli("image", "save", "orig", "web", name, "--json", timeout=900)
        for said in ("flushed the guest's writes", "paused", "resumed",
                     "removed the instance's authorised keys"):
            assert said in saved.err, saved.err
        saved = saved.json()
        assert saved["cloud"] == "qemu" and saved["image"]["format"] == "qcow2"
        removed = saved["image"]["keys_removed"]
        assert removed["/home/alice/.ssh/authorized_keys"] == ["alice"]
        assert removed["/root/.ssh/authorized_keys2"] == ["root"]
        folder = image_cache() / "saved" / "qemu" / name
        facts = json.loads(subprocess.run(
            ["qemu-img", "info", "--output=json", str(folder / "disk.qcow2")],
            capture_output=True, text=True, check=True).stdout)
        assert "backing-filename" not in facts  # standalone
        assert (folder / "vmlinuz").is_file() and (folder / "initrd.img").is_file()
        # The VM runs on after the save.
        assert ssh(web_address(cli, "orig"), key, "cat /root/marker").stdout.strip() == marker
        cli("terminate", "orig", timeout=600)  # one VM at a time on this machine

        listed = cli("image", "list", "--cloud", "qemu", "--json").json()["images"]
        [row] = [r for r in listed if r["name"] == name]
        assert row["size"] > 10 << 20 and row["source"] == "orig/web-0"

        cli("boot", web_plan(tmp_path / "copy", "copy", "qemu", name), "--name", "copy", timeout=1500)
        copy_key = cli.home / "runs" / "copy" / "id_ed25519"
        got = ssh(web_address(cli, "copy"), copy_key, "cat /root/marker; hostname")
        assert got.stdout.split() == [marker, "web-0"], got.stderr
        # The first run's key does not open the copy (cloud-init only adds keys), nor alice's.
        assert ssh(web_address(cli, "copy"), key, "true").returncode != 0
        assert ssh(web_address(cli, "copy"), alice_key, "true", user="alice").returncode != 0
        assert ssh(web_address(cli, "copy"), alice_key, "true").returncode != 0
        got = ssh(web_address(cli, "copy"), copy_key,
                  "ls -A /home/alice/.ssh; test -e /root/.ssh/authorized_keys2 || echo gone")
        assert got.stdout.split() == ["gone"], got.stdout + got.stderr
        busy = cli("image", "delete", name, "--cloud", "qemu", expect=2)
        assert "running VMs" in busy.err
        cli("terminate", "copy", timeout=600)
        cli("image", "delete", name, "--cloud", "qemu")
        assert not folder.exists()
    finally:
        destroy_all(cli.home)
        cli("image", "delete", name, "--cloud", "qemu", "--force", expect=None)


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


def test_stage_disk_files_checked_then_delete(qemu_base_image, tmp_path: Path):
    cli = Cli(tmp_path / "home")
    name = f"s{secrets.token_hex(3)}"
    raw = tmp_path / "disk.raw"
    _run("mkfs.ext4", "-q", "-F", "-L", "cidroot", str(raw), "16M")
    try:
        staged = cli("image", "stage", raw, "--cloud", "qemu", "--name", name, "--json").json()
        assert staged["format"] == "raw" and staged["virtual_size"] == 16 << 20
        listed = cli("image", "list", "--cloud", "qemu", "--json").json()["images"]
        assert name in [r["name"] for r in listed]
        cli("image", "delete", name, "--cloud", "qemu")
        assert name not in [r["name"] for r in
                            cli("image", "list", "--cloud", "qemu", "--json").json()["images"]]
    finally:
        cli("image", "delete", name, "--cloud", "qemu", expect=None)

    # A qcow2 naming a backing file on this machine: refused before anything is read from it.
    backed = tmp_path / "backed.qcow2"
    _run("qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(raw), str(backed))
    res = cli("image", "stage", backed, "--cloud", "qemu", "--name", name, expect=2)
    assert "backing file" in res.err
    # Not an ext4 disk (zeros), and a tarball on a qemu cloud.
    zeros = tmp_path / "zeros.raw"
    zeros.write_bytes(bytes(1 << 20))
    res = cli("image", "stage", zeros, "--cloud", "qemu", "--name", name, expect=2)
    assert "not a whole-disk ext4" in res.err.strip().splitlines()[-1]
    tarball = tmp_path / "fs.tar.gz"
    _run("tar", "-czf", str(tarball), "-C", str(tmp_path), "disk.raw")
    res = cli("image", "stage", tarball, "--cloud", "qemu", "--name", name, expect=2)
    assert "raw or qcow2" in res.err
    assert not (image_cache() / "saved" / "qemu" / name).exists()
