"""A saved image carries no one's login keys: what loginkeys names, and both providers' removal.

The local provider's removal runs on a real directory tree (the saved copy
is one), the qemu provider's on a real ext4 disk file made by mkfs.ext4 -d
and read back with debugfs (what `image save` edits; no VM needed). The
end-to-end save of a container is in test_images_local.py.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from cloudinitd.providers import loginkeys

PASSWD = """root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
alice:x:1000:1000::/home/alice:/bin/bash
bob:x:1001:1001::/home/bob:/bin/bash
odd:x:1002:1002::/home/o d"q:/bin/sh
"""
SSHD_CONFIG = "#AuthorizedKeysFile .ssh/nothing\nInclude /etc/ssh/sshd_config.d/*.conf\n"
EXTRA_CONF = ('AuthorizedKeysFile .ssh/authorized_keys /etc/ssh/keys/%u "%h/my keys" %C/x\n'
              "Match User bob\n    AuthorizedKeysFile=/srv/shared_keys\n")
# Key files a boot script could leave, relative to the root (all must go).
KEYS = [
    "root/.ssh/authorized_keys", "root/.ssh/authorized_keys2",
    "home/alice/.ssh/authorized_keys", "home/alice/.ssh/authorized_keys2",
    "etc/ssh/keys/alice", "home/alice/my keys", "srv/shared_keys",
    'home/o d"q/.ssh/authorized_keys',
    "home/ghost/.ssh/authorized_keys",  # a folder under /home without an account
    "srv/bobkeys/authorized_keys",  # bob's ~/.ssh is a link to /srv/bobkeys
]
KEPT = ["etc/passwd", "home/alice/.bashrc", "etc/ssh/sshd_config", "srv/other"]


def _tree(root: Path) -> None:
    for rel in KEYS + KEPT:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("ssh-ed25519 AAAA key\n")
    (root / "etc/passwd").write_text(PASSWD)
    (root / "etc/ssh/sshd_config").write_text(SSHD_CONFIG)
    (root / "etc/ssh/sshd_config.d").mkdir()
    (root / "etc/ssh/sshd_config.d/extra.conf").write_text(EXTRA_CONF)
    (root / "etc/ssh/sshd_config.d/off.conf.disabled").write_text("AuthorizedKeysFile /srv/other\n")
    (root / "etc/machine-id").write_text("0123\n")
    (root / "home/bob").mkdir()
    os.symlink("/srv/bobkeys", root / "home/bob/.ssh")


def test_every_accounts_files_and_every_authorizedkeysfile_name_are_listed():
    everyone = loginkeys.accounts(PASSWD, ["alice", "ghost", "bob"])
    assert [a.label for a in everyone] == ["root", "daemon", "alice", "bob", "odd", "/home/ghost"]
    names = loginkeys.configured([SSHD_CONFIG, EXTRA_CONF])
    assert names == [".ssh/authorized_keys", ".ssh/authorized_keys2", "/etc/ssh/keys/%u",
                     "%h/my keys", "%C/x", "/srv/shared_keys"]
    keys = loginkeys.key_files(everyone, names)
    assert keys.files["/etc/ssh/keys/alice"] == ["alice"]
    assert keys.files["/home/alice/my keys"] == ["alice"]
    assert keys.files["/srv/shared_keys"] == [loginkeys.EVERY_ACCOUNT]
    assert keys.files["/home/ghost/.ssh/authorized_keys2"] == ["/home/ghost"]
    assert "/etc/ssh/keys/" not in "".join(k for k in keys.files if "ghost" in k)
    assert keys.not_expanded == ["%C/x"]  # sshd refuses %C here: it opens nothing


@pytest.mark.parametrize("pattern,expanded", [
    ("%h/.k", "/home/alice/.k"), ("/k/%u.%U", "/k/alice.1000"), ("k%%", "/home/alice/k%"),
    ("~/k", "/root/k"), ("~bob/k", "/home/bob/k"), ("~nobody/k", None), ("a/../../etc", None),
    ("/k/%s", None), ("/k/%", None), ("//k//%u/", "/k/alice"),
])
def test_sshd_tokens_are_expanded_as_sshd_does(pattern, expanded):
    everyone = {a.name: a for a in loginkeys.accounts(PASSWD)}
    assert loginkeys.expand(pattern, everyone["alice"], everyone) == expanded


def test_local_save_removes_every_accounts_keys_and_nothing_outside_the_copy(tmp_path: Path):
    from cloudinitd.providers.local import snapshot

    root = tmp_path / "rootfs"
    _tree(root)
    # A link planted to this machine's path: resolved inside the copy, never here.
    outside = tmp_path / "host"
    outside.mkdir()
    (outside / "authorized_keys").write_text("this machine's\n")
    (root / "home/eve").mkdir()
    os.symlink(str(outside), root / "home/eve/.ssh")
    (root / "etc/passwd").write_text(PASSWD + "eve:x:1003:1003::/home/eve:/bin/sh\n")

    removed, keys = snapshot.forget_identity(root)
    for rel in KEYS:
        assert not (root / rel).exists(), rel
    for rel in KEPT:
        assert (root / rel).exists(), rel
    assert (outside / "authorized_keys").read_text() == "this machine's\n"
    assert (root / "etc/machine-id").read_text() == ""
    assert keys.files["/home/alice/.ssh/authorized_keys2"] == ["alice"]
    assert keys.files["/home/bob/.ssh/authorized_keys"] == ["bob"]
    assert keys.files["/root/.ssh/authorized_keys2"] == ["root"]
    assert len(keys.files) == len(KEYS) and keys.not_expanded == ["%C/x"]
    assert "/root/.ssh/authorized_keys" in keys.files  # the run's key: root's
    said = loginkeys.report(keys)
    assert said[0].startswith("removed the login keys of root, alice, bob, odd, /home/ghost, "
                              "every account: ")
    assert "/etc/ssh/keys/alice" in said[0]
    assert said[1:] == ["AuthorizedKeysFile %C/x: not expanded (sshd takes only %h %u %U %%, "
                        "no ..); any file it names stays"]


def _debugfs(disk: Path, command: str) -> str:
    return subprocess.run(["debugfs", "-R", command, str(disk)], capture_output=True,
                          text=True, check=True).stdout


def _names(disk: Path, folder: str) -> set[str]:
    listing = _debugfs(disk, f'ls -p "{folder}"')
    return {line.split("/")[5] for line in listing.splitlines() if line.count("/") == 7}


def test_qemu_save_removes_every_accounts_keys_from_the_ext4_disk(tmp_path: Path):
    from cloudinitd.providers.qemu import offline

    tree = tmp_path / "tree"
    _tree(tree)
    disk = tmp_path / "disk.raw"
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(tree), str(disk), "16M"], check=True,
                   capture_output=True)
    said: list[str] = []
    keys = offline.forget_identity(disk, said.append)
    assert said == ["removed the instance's authorised keys and machine id from the image"]
    for rel in KEYS:
        path = Path("/", rel)
        assert path.name not in _names(disk, str(path.parent).replace('"', '""')), rel
    assert _names(disk, "/srv/bobkeys") == {".", ".."}
    assert {"passwd", "sshd_config"} <= _names(disk, "/etc") | _names(disk, "/etc/ssh")
    assert ".bashrc" in _names(disk, "/home/alice") and "other" in _names(disk, "/srv")
    assert _debugfs(disk, "cat /etc/machine-id") == ""
    assert keys.files['/home/o d"q/.ssh/authorized_keys'] == ["odd"]
    assert len(keys.files) == len(KEYS) and keys.not_expanded == ["%C/x"]
    fsck = subprocess.run(["e2fsck", "-fn", str(disk)], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout
    # Nothing left: a second pass finds and removes nothing.
    assert offline.forget_identity(disk, said.append).files == {}
