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


A = loginkeys.Account


@pytest.mark.parametrize("passwd,folders,found", [
    # Six fields is enough (no shell); the uid is the third field, not the gid.
    ("carol:x:1001:1002::/home/carol", [], [A("carol", "1001", "/home/carol"), loginkeys.ROOT]),
    # An empty password field is no empty name.
    ("dave::1003:1004::/home/dave:/bin/sh", [], [A("dave", "1003", "/home/dave"), loginkeys.ROOT]),
    # Too few fields, or no name: no account (sshd could not look it up either).
    ("short:x:1:1:/home/short\n::5:5::/home/anon:/bin/sh", [], [loginkeys.ROOT]),
    # A relative or empty home still counts: sshd reads it from /.
    ("rel:x:7:7::srv/rel:/bin/sh\nnohome:x:8:8:::/bin/sh", [],
     [A("rel", "7", "srv/rel"), A("nohome", "8", ""), loginkeys.ROOT]),
    # root from the file, not the stand-in, and only once.
    ("root:x:0:0::/var/root:/bin/sh", [], [A("root", "0", "/var/root")]),
    # Orphan folders: sorted, after the accounts; not a folder an account has as its
    # home however written; never a name with / nor . or ..
    ("a:x:1:1::/home/a/:/bin/sh\nb:x:2:2::home/b:/bin/sh\nc:x:3:3::/home//c:/bin/sh\n"
     "d:x:4:4::/home/a:/bin/sh",
     ["zed", "a", "b", "c", "x/y", ".", "..", "amy"],
     [A("a", "1", "/home/a/"), A("b", "2", "home/b"), A("c", "3", "/home//c"),
      A("d", "4", "/home/a"), loginkeys.ROOT, A("", "", "/home/amy"), A("", "", "/home/zed")]),    # A relative home is from /: X/home/zed is /X/home/zed, not /home/zed.
    ("x:x:1:1::X/home/zed:/bin/sh", ["zed"], [A("x", "1", "X/home/zed"), loginkeys.ROOT,
                                                A("", "", "/home/zed")]),
])
def test_accounts_from_passwd_lines_with_odd_fields(passwd, folders, found):
    assert loginkeys.accounts(passwd, folders) == found


@pytest.mark.parametrize("config,names", [
    ("AuthorizedKeysFile .ssh/k # a comment", [".ssh/k"]),
    ("authorizedkeysfile=/a\n  AUTHORIZEDKEYSFILE = /b\tc", ["/a", "/b", "c"]),
    ("AuthorizedKeysFile none NONE /n", ["/n"]),
    ("AuthorizedKeysFile /a /a .ssh/authorized_keys\nAuthorizedKeysFile /a", ["/a"]),
    ("AuthorizedKeysFile 'q a' \"/d q\"", ["q a", "/d q"]),
    # An unclosed quote spoils its own line only (sshd refuses it too).
    ("AuthorizedKeysFile \"/x y\nAuthorizedKeysFile /after", ["/after"]),
    ("Match User bob\n\tAuthorizedKeysFile /m", ["/m"]),
    ("#AuthorizedKeysFile /c\nAuthorizedKeysFiles /z\nAuthorizedKeysCommand /y\n"
     "AuthorizedKeysFile", []),
])
def test_authorizedkeysfile_lines_as_sshd_reads_them(config, names):
    assert loginkeys.configured([config]) == list(loginkeys.DEFAULT_FILES) + names


ODD_PASSWD = PASSWD + """bob:x:2000:2000::/srv/second-bob:/bin/sh
rel:x:7:7::srv/rel:/bin/sh
nohome:x:8:8:::/bin/sh
~bob:x:9:9::/home/tb:/bin/sh
dots:x:10:10::/home/../etc:/bin/sh
"""


@pytest.mark.parametrize("pattern,name,expanded", [
    ("~bob/a/b", "alice", "/home/bob/a/b"),  # the first bob, as getpwnam finds
    ("~", "alice", "/root"), ("~/", "alice", "/root"), ("~%u/k", "alice", None),
    ("/srv/keyX/", "alice", "/srv/keyX"), ("/", "alice", None), ("k%%%", "alice", None),
    ("%%h", "alice", "/home/alice/%h"), ("%%u%", "alice", None), ("%u", "alice", "/home/alice/alice"),
    ("%U", "root", "/root/0"),
    # Relative and empty homes, from / as sshd (%h is joined twice, as sshd does).
    (".ssh/authorized_keys", "rel", "/srv/rel/.ssh/authorized_keys"),
    ("%h/k", "rel", "/srv/rel/srv/rel/k"), (".ssh/k", "nohome", "/.ssh/k"),
    ("%h/k", "nohome", "/k"),
    # ~ is expanded before the tokens: a user named ~bob is no home.
    ("%u/k", "~bob", "/home/tb/~bob/k"),
    ("%h/k", "dots", None),
])
def test_expansion_for_odd_accounts(pattern, name, expanded):
    everyone = loginkeys.accounts(ODD_PASSWD)
    account = next(a for a in everyone if a.name == name)
    by_name = {a.name: a for a in reversed(everyone)}
    assert loginkeys.expand(pattern, account, by_name) == expanded


@pytest.mark.parametrize("pattern,expanded", [
    ("%h/k", "/home/ghost/k"), ("%u", None), ("/k/%U", None), ("%%u", "/home/ghost/%u"),
    ("%h%%U", "/home/ghost%U"),
])
def test_expansion_for_a_folder_without_an_account(pattern, expanded):
    ghost = loginkeys.Account("", "", "/home/ghost")
    assert loginkeys.expand(pattern, ghost, {}) == expanded


def test_key_files_for_every_account_once_in_order():
    everyone = loginkeys.accounts("dots:x:5:5::/home/../x:/bin/sh\n" + PASSWD
                                  + "bob:x:2000:2000::/srv/second-bob:/bin/sh\n", ["ghost"])
    patterns = ["/srv/k", "//srv/k/", "/k/%s", "/k%h", "/k/%U", "~bob/k", "%u/x", "/k/%s"]
    keys = loginkeys.key_files(everyone, patterns)
    everybody = ["root", "daemon", "alice", "bob", "odd", "/home/ghost"]
    assert keys.files == {
        "/srv/k": [loginkeys.EVERY_ACCOUNT],
        "/k/home/alice": ["alice"], "/k/home/bob": ["bob"], '/k/home/o d"q': ["odd"],
        "/k/root": ["root"], "/k/usr/sbin": ["daemon"], "/k/srv/second-bob": ["bob"],
        "/k/home/ghost": ["/home/ghost"],
        "/k/5": ["dots"], "/k/0": ["root"], "/k/1": ["daemon"], "/k/1000": ["alice"],
        "/k/1001": ["bob"], "/k/1002": ["odd"], "/k/2000": ["bob"],
        "/home/bob/k": ["dots"] + everybody,
        "/root/root/x": ["root"], "/usr/sbin/daemon/x": ["daemon"],
        "/home/alice/alice/x": ["alice"], "/home/bob/bob/x": ["bob"],
        '/home/o d"q/odd/x': ["odd"], "/srv/second-bob/bob/x": ["bob"],
    }
    # dots' home has ..: not expanded here for it, and said (once, in order).
    assert keys.not_expanded == ["/k/%s", "/k%h", "%u/x"]
    assert list(keys.files)[:3] == ["/srv/k", "/k/root", "/k/usr/sbin"]


def test_a_fixed_name_is_removed_even_with_no_account():
    keys = loginkeys.key_files([], ["/srv/k", ".ssh/authorized_keys", "/k/%u"])
    assert keys.files == {"/srv/k": [loginkeys.EVERY_ACCOUNT]} and keys.not_expanded == []


@pytest.mark.parametrize("removed,said", [
    ({}, "no one's login keys were in the image"),
    ({"/b": ["alice"], "/a": ["root", "alice"]}, "removed the login keys of alice, root: /a, /b"),
])
def test_summary_names_owners_in_order_and_files_sorted(removed, said):
    assert loginkeys.summary(removed) == said


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
