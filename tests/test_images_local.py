"""`cloudinitd image` on local clouds: save a container, boot the copy, stage a tarball, delete.

Real LXC containers through the real CLI. The saved image goes to the
shared image cache under a name of this test's own, removed at the end.
"""

from __future__ import annotations

import io
import os
import secrets
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.support.cli import Cli, write_plan
from tests.support.images import web_address, web_plan
from tests.support.lxc import ssh

SAVED = Path(os.environ.get("CLOUDINITD_IMAGE_CACHE") or Path(__file__).resolve().parents[1]
             / ".cache" / "images") / "saved" / "local"


def _drop(cli: Cli, name: str) -> None:
    cli("image", "delete", name, "--cloud", "local", "--force", expect=None)


@pytest.mark.lxc
@pytest.mark.slow
def test_save_a_container_boot_its_image_list_and_delete(local_cli: Cli, tmp_path: Path):
    cli = local_cli
    name = f"t{secrets.token_hex(3)}"
    marker = secrets.token_hex(8)
    try:
        cli("boot", web_plan(tmp_path / "orig", "orig", "local"), "--name", "orig")
        old_key = cli.home / "runs" / "orig" / "id_ed25519"
        address = web_address(cli, "orig")
        # The guest plants links to this machine's paths: they must be saved as links.
        made = ssh(address, old_key, f"echo {marker} > /root/marker && ln -s /root /etc/x && "
                   "ln -s /etc/shadow /etc/leak && ln -s / /srv/up")
        assert made.returncode == 0, made.stderr

        bad = cli("image", "save", "orig", "web", "../evil", expect=2)
        assert bad.err.startswith("cloudinitd: error: image name") and bad.err.count("\n") == 1
        saved = cli("image", "save", "orig", "web", name, "--json")
        assert "froze" in saved.err and "thawed" in saved.err
        saved = saved.json()
        assert saved["name"] == name and saved["cloud"] == "local" and not saved["stopped"]
        # It keeps running (thawed): SSH still answers.
        assert ssh(address, old_key, "cat /root/marker").stdout.strip() == marker

        root = SAVED / f"{name}-id100000" / "rootfs"
        assert os.readlink(root / "etc/x") == "/root"
        assert os.readlink(root / "etc/leak") == "/etc/shadow"
        assert os.readlink(root / "srv/up") == "/"
        assert (root / "root/marker").read_text().strip() == marker
        assert (root / "root/marker").stat().st_uid == 100000  # shifted like the base
        # The instance's identity stays behind: its keys and machine id.
        assert not (root / "root/.ssh/authorized_keys").exists()
        assert not (root / "etc/ssh/ssh_host_ed25519_key").exists()
        assert (root / "etc/machine-id").read_text() == ""
        assert stat.S_IMODE((SAVED / f"{name}-id100000").stat().st_mode) == 0o700

        listed = cli("image", "list", "--cloud", "local", "--json").json()["images"]
        [row] = [r for r in listed if r["name"] == name]
        assert row["size"] > 10 << 20 and row["created"] and row["source"] == "orig/web-0"
        assert any(r["name"] == "debian-12" and r["builtin"] for r in listed)
        events = cli("history", "orig", "--json").json()["events"]
        assert any(e["kind"] == "image" and name in e["message"] for e in events)

        cli("boot", web_plan(tmp_path / "copy", "copy", "local", name), "--name", "copy")
        new_key = cli.home / "runs" / "copy" / "id_ed25519"
        copy = web_address(cli, "copy")
        assert ssh(copy, new_key, "cat /root/marker").stdout.strip() == marker
        assert ssh(copy, new_key, "readlink /etc/x").stdout.strip() == "/root"
        # The first run's key does not open the copy.
        assert ssh(copy, old_key, "true").returncode != 0

        # In use: refused without --force (exit 2, one line).
        busy = cli("image", "delete", name, "--cloud", "local", expect=2)
        assert "in use" in busy.err and len(busy.err.strip().splitlines()) == 1
        cli("terminate", "copy")
        cli("image", "delete", name, "--cloud", "local")
        listed = cli("image", "list", "--cloud", "local", "--json").json()["images"]
        assert name not in [r["name"] for r in listed]
        assert not (SAVED / f"{name}-id100000").exists()
        # A built-in is never deleted.
        refused = cli("image", "delete", "debian-12", "--cloud", "local", expect=2)
        assert "built-in" in refused.err
    finally:
        _drop(cli, name)


@pytest.mark.parametrize("args", [
    ("image", "delete", "x" * 65, "--cloud", "local"),
    ("image", "delete", "..", "--cloud", "qemu"),
    ("image", "delete", "a/b", "--cloud", "local"),
    ("image", "stage", "FILE", "--cloud", "local", "--name", "../../etc"),
    ("image", "stage", "FILE", "--cloud", "qemu", "--name", "a\nb"),
])
def test_bad_image_names_exit_2_in_one_line(cli: Cli, tmp_path: Path, args):
    cli.env["CLOUDINITD_IMAGE_CACHE"] = str(tmp_path / "cache")
    (tmp_path / "f.raw").write_bytes(b"x" * 4096)
    res = cli(*[str(tmp_path / "f.raw") if a == "FILE" else a for a in args], expect=2)
    assert res.err.startswith("cloudinitd: error: image name")
    assert len(res.err.strip().splitlines()) == 1 and "Traceback" not in res.err
    assert not (tmp_path / "cache" / "saved").exists()  # refused before touching the cache


def _tarball(path: Path, members: list[tuple[str, str, str]]) -> Path:
    """(name, type: d|f|l|h, data or link target) -> a .tar.gz."""
    with tarfile.open(path, "w:gz") as tar:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            if kind == "d":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif kind == "f":
                info.size, info.mode = len(data), 0o755
                tar.addfile(info, io.BytesIO(data.encode()))
            else:
                info.type = tarfile.SYMTYPE if kind == "l" else tarfile.LNKTYPE
                info.linkname = data
                tar.addfile(info)
    return path


ROOTFS = [(".", "d", ""), ("etc", "d", ""), ("etc/hostname", "f", "x\n"), ("sbin", "d", ""),
          ("sbin/init", "f", "#!/bin/sh\n"), ("etc/x", "l", "/root")]


def test_stage_a_rootfs_tarball_then_delete_it(cli: Cli, tmp_path: Path, monkeypatch):
    cache = tmp_path / "cache"
    cli.env["CLOUDINITD_IMAGE_CACHE"] = str(cache)
    tarball = _tarball(tmp_path / "fs.tar.gz", ROOTFS)
    staged = cli("image", "stage", tarball, "--cloud", "local", "--name", "mini", "--json").json()
    assert staged["name"] == "mini" and staged["format"] == "tar.gz"
    root = cache / "saved" / "local" / "mini-id100000" / "rootfs"
    assert (root / "sbin/init").stat().st_uid == 100000  # shifted for the containers
    assert os.readlink(root / "etc/x") == "/root"
    for level in (cache, cache / "saved", cache / "saved" / "local"):
        assert level.stat().st_uid == 0 and stat.S_IMODE(level.stat().st_mode) == 0o700
    listed = cli("image", "list", "--cloud", "local", "--json").json()["images"]
    assert [r["name"] for r in listed if not r["builtin"]] == ["mini"]
    again = cli("image", "stage", tarball, "--cloud", "local", "--name", "mini", expect=2)
    assert "exists already" in again.err
    cli("image", "delete", "mini", "--cloud", "local")
    assert not (cache / "saved" / "local" / "mini-id100000").exists()
    cli("image", "delete", "mini", "--cloud", "local", expect=2)


@pytest.mark.parametrize("members,why", [
    ([*ROOTFS, ("/etc/abs", "f", "x")], "leaves the root"),
    ([*ROOTFS, ("etc/../../out", "f", "x")], "leaves the root"),
    ([*ROOTFS, ("etc/x/owned", "f", "x")], "below the symlink"),
    ([*ROOTFS, ("etc/hard", "h", "../../etc/shadow")], "leaves the root"),
    ([*ROOTFS, ("etc/hard", "h", "etc/x/.bashrc")], "hard link through a symlink"),
    ([(".", "d", ""), ("etc", "d", "")], "not a root filesystem"),
])
def test_unsafe_tarballs_are_refused_before_unpacking(cli: Cli, tmp_path: Path, members, why):
    cache = tmp_path / "cache"
    cli.env["CLOUDINITD_IMAGE_CACHE"] = str(cache)
    tarball = _tarball(tmp_path / "bad.tar.gz", members)
    res = cli("image", "stage", tarball, "--cloud", "local", "--name", "bad", expect=2)
    # Progress lines may come first; the error is one line, and the last.
    last = res.err.strip().splitlines()[-1]
    assert last.startswith("cloudinitd: error:") and why in last and "Traceback" not in res.err
    assert not (cache / "saved" / "local" / "bad-id100000").exists()
    leftovers = list((cache / "saved" / "local").glob(".work-*")) if cache.exists() else []
    assert leftovers == []


def test_a_cache_someone_else_can_write_is_refused(cli: Cli, tmp_path: Path):
    cache = tmp_path / "cache"
    (cache / "saved" / "local").mkdir(parents=True)
    for level in (cache, cache / "saved", cache / "saved" / "local"):
        level.chmod(0o700)
    (cache / "saved").chmod(0o777)
    cli.env["CLOUDINITD_IMAGE_CACHE"] = str(cache)
    res = cli("image", "list", "--cloud", "local", expect=1)
    assert "refusing to use it" in res.err
    shutil.rmtree(cache)


@pytest.mark.lxc
@pytest.mark.slow
def test_image_test_stages_boots_checks_and_discards_a_tarball(local_cli: Cli, tmp_path: Path):
    from cloudinitd.providers.local import image

    # The built-in base's own tarball is a root filesystem any local cloud boots.
    tarball = image.tarball_path(image.image_spec("debian-12"))
    assert tarball.is_file(), "build the base image first: cloudinitd image build"
    name = f"it{secrets.token_hex(3)}"
    check = tmp_path / "check.sh"
    check.write_text("test -s /etc/cloudinitd/image && grep -q debian-12 /etc/cloudinitd/image\n")
    try:
        res = local_cli("image", "test", tarball, "--cloud", "local", "--name", name,
                        "--check", check, "--discard", "--json")
        result = res.json()
        assert result["check"] == "passed" and result["kept"] is False
        assert result["undone"] == ["run", "stage"]
        assert result["address"].startswith(local_cli.net.subnet.rsplit(".", 2)[0])
        assert not (SAVED / f"{name}-id100000").exists()
        containers = local_cli.home / "local" / "containers"
        assert [p for p in containers.iterdir() if p.is_dir()] == []  # the instance is gone
    finally:
        _drop(local_cli, name)


@pytest.mark.lxc
@pytest.mark.slow
def test_save_with_stop_shuts_the_container_down_then_terminates_it(local_cli: Cli,
                                                                   tmp_path: Path):
    cli = local_cli
    name = f"st{secrets.token_hex(3)}"
    try:
        cli("boot", web_plan(tmp_path / "orig", "orig", "local"), "--name", "orig")
        key = cli.home / "runs" / "orig" / "id_ed25519"
        assert ssh(web_address(cli, "orig"), key, "echo kept > /root/kept").returncode == 0
        saved = cli("image", "save", "orig", "web/0", name, "--stop", "--json")
        assert "shutting" in saved.err and "froze" not in saved.err
        assert saved.json()["stopped"] is True
        containers = cli.home / "local" / "containers"
        assert [p for p in containers.iterdir() if p.is_dir()] == []
        root = SAVED / f"{name}-id100000" / "rootfs"
        assert (root / "root/kept").read_text() == "kept\n"
    finally:
        _drop(cli, name)


def test_what_is_unpacked_is_what_was_checked(tmp_path: Path):
    """The file is swapped for another while it is checked: the checked bytes are unpacked."""
    from cloudinitd.providers.local import rootfs_import

    tarball = _tarball(tmp_path / "fs.tar.gz", ROOTFS)
    swapped = _tarball(tmp_path / "other.tar.gz", [*ROOTFS, ("etc/planted", "f", "x")])
    swaps = []

    def sent(_n: int) -> None:  # called while the archive is being read for the check
        if not swaps:
            swaps.append(os.replace(swapped, tarball))

    cache = tmp_path / "cache"
    rootfs_import.import_tarball(tarball, "swap", cache, sent, lambda _line: None)
    root = cache / "saved" / "local" / "swap-id100000" / "rootfs"
    assert swaps and (root / "etc/hostname").exists()
    assert not (root / "etc/planted").exists()
    assert not list((cache / "saved" / "local" / "swap-id100000").glob("source*"))


@pytest.mark.lxc
@pytest.mark.slow
def test_a_saved_image_lets_no_one_in_with_the_keys_its_source_had(local_cli: Cli,
                                                                   tmp_path: Path):
    """A boot script made an account with a key and gave root a second keys file."""
    cli = local_cli
    name = f"k{secrets.token_hex(3)}"
    alice_key = tmp_path / "alice"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(alice_key)],
                   check=True)
    public = (tmp_path / "alice.pub").read_text().strip()
    plan = write_plan(tmp_path / "orig", """
        name: orig
        services:
          web:
            cloud: local
            boot: keys.sh
        """, {"keys.sh": f"""
        set -e
        useradd -m -s /bin/bash alice
        install -d -m 700 -o alice -g alice /home/alice/.ssh
        echo '{public}' > /home/alice/.ssh/authorized_keys
        chown alice: /home/alice/.ssh/authorized_keys
        echo '{public}' > /root/.ssh/authorized_keys2
        mkdir -p /etc/ssh/keys
        echo '{public}' > /etc/ssh/keys/alice
        echo 'AuthorizedKeysFile .ssh/authorized_keys .ssh/authorized_keys2 /etc/ssh/keys/%u' \\
            > /etc/ssh/sshd_config.d/keys.conf
        systemctl reload ssh
        """})
    try:
        cli("boot", plan, "--name", "orig")
        address = web_address(cli, "orig")
        # The source instance does let alice's key in, as alice and as root.
        assert ssh(address, alice_key, "true", user="alice").returncode == 0
        assert ssh(address, alice_key, "true").returncode == 0

        saved = cli("image", "save", "orig", "web", name, "--json")
        removed = {"/root/.ssh/authorized_keys": ["root"],
                   "/root/.ssh/authorized_keys2": ["root"],
                   "/home/alice/.ssh/authorized_keys": ["alice"],
                   "/etc/ssh/keys/alice": ["alice"]}
        root = SAVED / f"{name}-id100000" / "rootfs"
        for rel in removed:
            assert not (root / rel.lstrip("/")).exists(), rel
        assert (root / "home/alice").is_dir()  # her account stays, her keys do not
        # Whose keys left is said, and is in --json.
        assert "removed the login keys of root, alice" in saved.err, saved.err
        assert saved.json()["image"]["keys_removed"] == removed

        cli("boot", web_plan(tmp_path / "copy", "copy", "local", name), "--name", "copy")
        copy, new_key = web_address(cli, "copy"), cli.home / "runs" / "copy" / "id_ed25519"
        # The image boots and its own run's key opens it; alice's key opens nothing.
        got = ssh(copy, new_key, "id -un alice; ls -A /home/alice/.ssh /etc/ssh/keys; "
                  "test ! -e /root/.ssh/authorized_keys2 && echo none2")
        assert got.stdout.split() == ["alice", "/etc/ssh/keys:", "/home/alice/.ssh:", "none2"], \
            got.stdout + got.stderr
        assert ssh(copy, alice_key, "true", user="alice").returncode != 0
        assert ssh(copy, alice_key, "true").returncode != 0
        cli("terminate", "copy")
    finally:
        _drop(cli, name)
