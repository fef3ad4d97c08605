"""cloudinitd/plan/inventory.py: hosts lists and inventory files (pure, in-process; in the
mutation test selection).

Addresses end up on an ssh argument list: each refusal is checked word for
word, at its file and line.
"""

from __future__ import annotations

import pytest

from cloudinitd.plan.inventory import InventoryError, from_file, from_list, parse_address
from cloudinitd.plan.model import StaticHost


@pytest.mark.parametrize(("text", "expected"), [
    ("db.example.com", ("db.example.com", None)),
    ("  10.1.2.3:2200 ", ("10.1.2.3", 2200)),
    ("host_1", ("host_1", None)),
    ("h:1", ("h", 1)),
    ("h:65535", ("h", 65535)),
    ("[::1]", ("::1", None)),
    ("[2001:db8::7]:22", ("2001:db8::7", 22)),
    ("2001:db8::8", ("2001:db8::8", None)),
    ("[fe80::1%eth0]:2222", ("fe80::1%eth0", 2222)),
    ("a" * 253, ("a" * 253, None)),
])
def test_addresses(text, expected):
    assert parse_address(text) == expected


LONG = "x" * 70


@pytest.mark.parametrize(("text", "message"), [
    ("", "an empty address"),
    ("   ", "an empty address"),
    ("-oProxyCommand=x", "'-oProxyCommand=x' starts with '-' (it would read as an ssh option)"),
    ("root@h", "'root@h' names a user; give the address only and set ssh_user for the login"),
    ("a b", "'a b' is not an address (HOST or HOST:PORT)"),
    ("a..b", "'a..b' is not an address (HOST or HOST:PORT)"),
    (".a", "'.a' is not an address (HOST or HOST:PORT)"),
    ("a" * 254, f"'{'a' * 60}' is not an address (HOST or HOST:PORT)"),
    ("h:0", "'h:0': the port must be a number from 1 to 65535"),
    ("h:65536", "'h:65536': the port must be a number from 1 to 65535"),
    ("h:", "'h:': the port must be a number from 1 to 65535"),
    ("h:x", "'h:x': the port must be a number from 1 to 65535"),
    ("[::1]:0", "'[::1]:0': the port must be a number from 1 to 65535"),
    ("[zz::1]:22", "'[zz::1]:22' is not an IPv6 address"),
    ("1:2:3", "'1:2:3' is not an IPv6 address"),
    (f"-{LONG}", f"'-{LONG[:59]}' starts with '-' (it would read as an ssh option)"),
    (f"{LONG}@h", f"'{LONG[:60]}' names a user; give the address only and set ssh_user"
                  " for the login"),
    (f"[{'1:' * 35}1]", f"'[{'1:' * 29}1' is not an IPv6 address"),
    (f"{LONG}:0", f"'{LONG[:60]}': the port must be a number from 1 to 65535"),
])
def test_refused_addresses_say_why(text, message):
    with pytest.raises(ValueError) as info:
        parse_address(text)
    assert str(info.value) == message


def test_a_list_gives_every_bad_entry_at_its_line_and_each_address_once():
    hosts, errors = from_list([("10.0.0.1", 3), ("root@x", 4), ("10.0.0.2:2200", 5),
                               (7, 6)], "p.yml")
    assert hosts == [StaticHost("10.0.0.1", None, "p.yml", 3),
                     StaticHost("10.0.0.2", 2200, "p.yml", 5), StaticHost("7", None, "p.yml", 6)]
    assert [str(e) for e in errors] == [
        "p.yml:4: hosts: 'root@x' names a user; give the address only and set ssh_user for"
        " the login"]
    hosts, errors = from_list([("Web.Example", 3), ("web.example", 4), ("web.example:22", 5)],
                              "p.yml")
    assert [str(e) for e in errors] == ["p.yml:4: hosts: web.example is listed twice (also"
                                        " line 3)"]
    assert len(hosts) == 3


def _file(tmp_path, text: str, group: str | None = None, name: str = "inv.ini"):
    path = tmp_path / name
    path.write_text(text)
    return from_file(path, group, 64 * 1024)


def _addresses(hosts):
    return [(h.address, h.port, h.line) for h in hosts]


def test_a_plain_file_skips_comments_and_blank_lines(tmp_path):
    hosts = _file(tmp_path, "# machines\n10.0.0.1  # first # of two\n\n; old\n  10.0.0.2:2222\n")
    assert _addresses(hosts) == [("10.0.0.1", None, 2), ("10.0.0.2", 2222, 5)]
    assert hosts[0].file == str(tmp_path / "inv.ini")


INI = """\
[web]
w1 ansible_host=10.0.0.1
w2 ansible_host=10.0.0.2 ansible_port=2222 ansible_user='x'
[db]
d1.example.com ansible_port="2200"
[db:vars]
d9.example.com
[all:children]
web
db
[web:children]
all
"""


@pytest.mark.parametrize(("group", "expected"), [
    (None, [("10.0.0.1", None, 2), ("10.0.0.2", 2222, 3), ("d1.example.com", 2200, 5)]),
    ("web", [("10.0.0.1", None, 2), ("10.0.0.2", 2222, 3), ("d1.example.com", 2200, 5)]),
    ("db", [("d1.example.com", 2200, 5)]),
    ("all", [("10.0.0.1", None, 2), ("10.0.0.2", 2222, 3), ("d1.example.com", 2200, 5)]),
])
def test_ini_groups_children_and_vars(tmp_path, group, expected):
    # `[db:vars]` holds no hosts; `all` and `web` name each other: each group is read once.
    assert _addresses(_file(tmp_path, INI, group)) == expected


def test_ini_host_variables(tmp_path):
    hosts = _file(tmp_path, "[web]\n[2001:db8::1]:2200\nw1 ansible_host='webX' note=a=b\n"
                            "w2 ansible_host=\"10.0.0.2\" ansible_port=2022\n")
    assert _addresses(hosts) == [("2001:db8::1", 2200, 2), ("webX", None, 3), ("10.0.0.2", 2022, 4)]
    assert all(h.file == str(tmp_path / "inv.ini") for h in hosts)


def test_a_host_in_two_groups_is_kept_once(tmp_path):
    hosts = _file(tmp_path, "[a]\nh1\nh2\n[b]\nH1\nh2:22\n")
    assert _addresses(hosts) == [("h1", None, 2), ("h2", None, 3), ("h2", 22, 6)]


@pytest.mark.parametrize(("text", "group", "message"), [
    ("[web]\n10.0.0.1\nweb[01:09].example.com\n", None,
     "inv.ini:3: host ranges ('web[01:09].example.com') are not supported; list each host"),
    ("[web]\n10.0.0.1\n", "wbe", "inv.ini:1: no group 'wbe' in the inventory (groups: web)"),
    ("10.0.0.1\n", "web", "inv.ini:1: no group 'web' in the inventory (groups: none)"),
    ("10.0.0.1\nx ansible_port=0\n", None,
     "inv.ini:2: 'x ansible_port=0': the port must be a number from 1 to 65535"),
    ("h1 color\n", None, "inv.ini:1: 'color' is not KEY=VALUE after host 'h1'"),
    ("[web]\nroot@h\n", None, "inv.ini:2: hosts: 'root@h' names a user; give the address"
                              " only and set ssh_user for the login"),
    ("# nothing\n", None, "inv.ini:1: the inventory lists no hosts"),
    ("[web]\n[db]\nh1\n", "web", "inv.ini:1: the inventory lists no hosts in group 'web'"),
    ("[web:children]\ndb\n", "web", "inv.ini:2: group 'web' names an unknown child group 'db'"),
    ("[all:children]\nweb\n[web:children]\nnope\n", "all",
     "inv.ini:4: group 'web' names an unknown child group 'nope'"),
    ("[web]\n[db]\nh\n", "x", "inv.ini:1: no group 'x' in the inventory (groups: db, web)"),
    ("h ansible_port=22=2\n", None, "inv.ini:1: 'h ansible_port=22=2': the port must be a number"
                                     " from 1 to 65535"),
    (f"h {LONG}\n", None, f"inv.ini:1: '{LONG[:60]}' is not KEY=VALUE after host 'h'"),
    (f"{LONG} x\n", None, f"inv.ini:1: 'x' is not KEY=VALUE after host '{LONG[:60]}'"),
    (f"a[1:3]{LONG}\n", None, f"inv.ini:1: host ranges ('{('a[1:3]' + LONG)[:60]}') are not"
                              " supported; list each host"),
])
def test_bad_inventories_are_located(tmp_path, text, group, message, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InventoryError) as info:
        _file(tmp_path, text, group)
    assert str(info.value) == message
