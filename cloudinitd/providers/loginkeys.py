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
one with `..` is not expanded here: both are reported, not removed. As in
sshd, `~` is expanded first (when sshd reads its configuration), then the
tokens; a name still relative is joined to the home, and a relative or
empty home is taken from `/` (sshd's working directory).
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass

DEFAULT_FILES = (".ssh/authorized_keys", ".ssh/authorized_keys2")
PASSWD = "/etc/passwd"
SSHD_CONFIG = "/etc/ssh/sshd_config"
SSHD_CONFIG_DIR = "/etc/ssh/sshd_config.d"
HOMES = "/home"
EVERY_ACCOUNT = "every account"
_KEYWORD = re.compile(r"\s*([A-Za-z]+)\s*(?:=\s*|\s+)(.*)")
# A lone `%` at the end is a token too (an empty one, which sshd refuses).
_TOKEN = re.compile(r"%(.?)")


@dataclass(frozen=True)
class Account:
    name: str  # "" for a folder under /home that no account names
    uid: str
    home: str

    @property
    def label(self) -> str:
        return self.name or self.home


ROOT = Account("root", "0", "/root")


def accounts(passwd: str, home_dirs: Iterable[str] = ()) -> list[Account]:
    """Every named account of `passwd`, root always, then the orphan /home folders."""
    found: list[Account] = []
    for line in passwd.splitlines():
        fields = line.split(":")
        # Any home: sshd reads a relative (or empty) one from its working directory, /.
        if len(fields) >= 6 and fields[0]:
            found.append(Account(fields[0], fields[2], fields[5]))
    if not any(a.name == "root" for a in found):
        found.append(ROOT)
    homes = {posixpath.normpath("/" + a.home.lstrip("/")) for a in found}
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
            for word in words:
                if word.lower() != "none" and word not in names:
                    names.append(word)
    return names


def expand(pattern: str, account: Account, everyone: dict[str, Account]) -> str | None:
    """`pattern` as sshd reads it for `account`; None when it cannot be told here."""
    if pattern.startswith("~"):
        # sshd expands ~ when it reads its configuration, as root, before any token.
        user, _, rest = pattern[1:].partition("/")
        owner = everyone.get(user or "root")
        if owner is None:
            return None
        pattern = f"{owner.home}/{rest}"
    values = {"%": "%", "h": account.home, "u": account.name, "U": account.uid}
    tokens = set(_TOKEN.findall(pattern))
    if tokens - values.keys() or not account.name and tokens & {"u", "U"}:
        return None  # sshd refuses the token; a folder without an account has no %u or %U
    path = _TOKEN.sub(lambda m: values[m.group(1)], pattern)
    if not path.startswith("/"):
        path = f"{account.home}/{path}"
    if ".." in path.split("/"):
        return None
    # "/" first: sshd opens a name still relative (a relative home) from its working directory.
    return re.sub(r"/+", "/", "/" + path).rstrip("/") or None


@dataclass
class KeyFiles:
    files: dict[str, list[str]]  # path -> the accounts (labels) whose keys it may hold
    not_expanded: list[str]  # AuthorizedKeysFile names not turned into files


def key_files(everyone: list[Account], patterns: list[str]) -> KeyFiles:
    """Every file the patterns name for every account."""
    # sshd's getpwnam finds the first line of a name.
    by_name = {a.name: a for a in reversed(everyone)}
    files: dict[str, list[str]] = {}
    not_expanded: list[str] = []
    for pattern in patterns:
        fixed = _fixed(pattern)  # one file, whoever logs in: expanded once
        for account in [ROOT] if fixed else everyone:
            path = expand(pattern, account, by_name)
            if path is None:
                # Folders without an account never expand %u: that alone is no news.
                if account.name and pattern not in not_expanded:
                    not_expanded.append(pattern)
                continue
            users = files.setdefault(path, [])
            label = EVERY_ACCOUNT if fixed else account.label
            if label not in users:
                users.append(label)
    return KeyFiles(files, not_expanded)


def in_image(read: Callable[[str], str], config_names: Iterable[str],
             home_names: Iterable[str]) -> KeyFiles:
    """Every login key file of an image, from what its provider reads of it: `read(name)`
    gives a file's text ("" when it cannot be read), `config_names` the entries of
    sshd_config.d, `home_names` those of /home (each provider reads them its own way)."""
    configs = [read(SSHD_CONFIG)] + [read(f"{SSHD_CONFIG_DIR}/{n}")
                                     for n in sorted(config_names) if n.endswith(".conf")]
    return key_files(accounts(read(PASSWD), home_names), configured(configs))


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
