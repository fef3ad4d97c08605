"""The files of a saved image that let someone log in: every account's authorised keys.

A boot script may have made accounts with keys, added keys to root's
`authorized_keys2`, or pointed sshd's `AuthorizedKeysFile` elsewhere; all of
those would open every instance of the image (AWS's rule for shared images
is the same: no one's keys). Given the texts the provider read from the
image (its /etc/passwd, its sshd_config and sshd_config.d/*.conf) and the
folders under its /home, this names the files to remove, for both the local
provider (through guestfs) and the qemu one (through debugfs). No I/O here.

What sshd reads (sshd_config(5)): each AuthorizedKeysFile name, after its
tokens `%%`, `%h`, `%u` and `%U` are expanded, is absolute or relative to
the user's home; the default is `.ssh/authorized_keys .ssh/authorized_keys2`.
The defaults are always removed (a `Match` block may bring them back), and
every AuthorizedKeysFile line counts, in or out of a `Match` block. A name
with any other `%` token is refused by sshd itself (it opens nothing), and
one with `..` is not expanded here: both are reported, not removed.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass

DEFAULT_FILES = (".ssh/authorized_keys", ".ssh/authorized_keys2")
PASSWD = "/etc/passwd"
SSHD_CONFIG = "/etc/ssh/sshd_config"
SSHD_CONFIG_DIR = "/etc/ssh/sshd_config.d"
HOMES = "/home"
EVERY_ACCOUNT = "every account"
_KEYWORD = re.compile(r"\s*([A-Za-z]+)\s*(?:=\s*|\s+)(.*)")
_TOKEN = re.compile(r"%(.)")


@dataclass(frozen=True)
class Account:
    name: str  # "" for a folder under /home that no account names
    uid: str
    home: str

    @property
    def label(self) -> str:
        return self.name or self.home


def accounts(passwd: str, home_dirs: Iterable[str] = ()) -> list[Account]:
    """Every account of `passwd` with an absolute home, root always, and orphan /home folders."""
    found: list[Account] = []
    for line in passwd.splitlines():
        fields = line.split(":")
        if len(fields) >= 6 and fields[0] and fields[5].startswith("/"):
            found.append(Account(fields[0], fields[2], fields[5]))
    if not any(a.name == "root" for a in found):
        found.append(Account("root", "0", "/root"))
    homes = {posixpath.normpath(a.home) for a in found}
    for name in sorted(home_dirs):
        home = f"{HOMES}/{name}"
        if "/" not in name and name not in (".", "..") and home not in homes:
            found.append(Account("", "", home))
    return found


def configured(configs: Iterable[str]) -> list[str]:
    """The defaults, then every AuthorizedKeysFile name of the sshd configuration texts."""
    names = list(DEFAULT_FILES)
    for text in configs:
        for line in text.splitlines():
            match = _KEYWORD.match(line)
            if not match or match.group(1).lower() != "authorizedkeysfile":
                continue
            try:
                words = shlex.split(match.group(2), comments=True)
            except ValueError:  # an unclosed quote: sshd rejects the line too
                continue
            names += [w for w in words if w.lower() != "none" and w not in names]
    return names


def expand(pattern: str, account: Account, everyone: dict[str, Account]) -> str | None:
    """`pattern` as sshd reads it for `account`; None when it cannot be told here."""
    values = {"%": "%", "h": account.home, "u": account.name, "U": account.uid}
    if not account.name and _TOKEN.search(pattern.replace("%h", "").replace("%%", "")):
        return None  # a folder without an account has no %u or %U
    unknown = [t for t in _TOKEN.findall(pattern) if t not in values]
    if unknown or pattern.endswith("%") and not pattern.endswith("%%"):
        return None
    path = _TOKEN.sub(lambda m: values[m.group(1)], pattern)
    if path.startswith("~"):
        # sshd expands ~ when it reads its configuration, as root.
        user, _, rest = path[1:].partition("/")
        owner = everyone.get(user or "root")
        if owner is None:
            return None
        path = f"{owner.home}/{rest}"
    if not path.startswith("/"):
        path = f"{account.home}/{path}"
    if ".." in path.split("/"):
        return None
    return re.sub(r"/+", "/", path).rstrip("/") or None


@dataclass
class KeyFiles:
    files: dict[str, list[str]]  # path -> the accounts (labels) whose keys it may hold
    not_expanded: list[str]  # AuthorizedKeysFile names not turned into files


def key_files(everyone: list[Account], patterns: list[str]) -> KeyFiles:
    """Every file the patterns name for every account."""
    by_name = {a.name: a for a in everyone if a.name}
    files: dict[str, list[str]] = {}
    not_expanded: list[str] = []
    for pattern in patterns:
        if _fixed(pattern):  # one file, whoever logs in
            path = expand(pattern, everyone[0], by_name) if everyone else None
            if path is None:
                not_expanded.append(pattern)
            else:
                files.setdefault(path, []).append(EVERY_ACCOUNT)
            continue
        for account in everyone:
            path = expand(pattern, account, by_name)
            if path is None:
                # Folders without an account never expand %u: that alone is no news.
                if account.name and pattern not in not_expanded:
                    not_expanded.append(pattern)
                continue
            users = files.setdefault(path, [])
            if account.label not in users:
                users.append(account.label)
    return KeyFiles(files, not_expanded)


def _fixed(pattern: str) -> bool:
    """A name that is the same file for every account (absolute, no %h, %u or %U)."""
    return pattern.startswith("/") and not set(_TOKEN.findall(pattern)) & {"h", "u", "U"}


def report(keys: KeyFiles) -> list[str]:
    """What `image save` says: whose keys left, and the names it could not expand."""
    return [summary(keys.files)] + [
        f"AuthorizedKeysFile {pattern}: not expanded (sshd takes only %h %u %U %%, no ..); "
        "any file it names stays" for pattern in keys.not_expanded]


def summary(removed: dict[str, list[str]]) -> str:
    """One line: whose keys left the image, and from which files."""
    if not removed:
        return "no one's login keys were in the image"
    owners: list[str] = []
    for users in removed.values():
        owners += [u for u in users if u not in owners]
    return (f"removed the login keys of {', '.join(owners)}: "
            + ", ".join(sorted(removed)))
