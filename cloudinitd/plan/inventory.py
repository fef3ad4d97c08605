"""`hosts:` of a static service: addresses from the plan, or from a file beside it.

A plan names the machines it does not launch in one of three ways:

    hosts: [10.0.0.5, "db.example.com:2222", "[2001:db8::7]:22"]
    hosts: {file: hosts.txt}                    # one address per line, `#` comments
    hosts: {file: inventory.ini, group: web}    # Ansible-style INI inventory

Every entry is `HOST` or `HOST:PORT` (IPv6 in brackets when a port follows).
Plans come from other people and the addresses end up on an `ssh` argument
list and in host-key files, so an entry is refused, with its file and line,
when it carries a user (`root@host`: the login is `ssh_user`), starts with
`-` (an ssh option), holds anything but address characters, or is listed
twice. The file is bounded like a plan file; the number of hosts like a
service's instance count.

Pure: reads the inventory file (as the loader reads script files), nothing else.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

from cloudinitd.errors import PlanError
from cloudinitd.paths import display_path
from cloudinitd.plan.limits import read_text
from cloudinitd.plan.model import StaticHost

# A DNS name or IPv4 address: labels of letters, digits, '-', '_' joined by dots.
_NAME = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,252})$")
# [IPv6]:PORT or [IPv6]
_BRACKETED = re.compile(r"^\[([0-9A-Fa-f:.%A-Za-z]+)\](?::([0-9]{1,5}))?$")
_SECTION = re.compile(r"^\[([A-Za-z0-9_.-]+)(?::(children|vars))?\]$")


class InventoryError(PlanError):
    """A bad `hosts:` entry or inventory file (file and line of the entry)."""


def parse_address(text: str) -> tuple[str, int | None]:
    """`HOST` / `HOST:PORT` / `[IPv6]:PORT` / bare IPv6 -> (address, port); ValueError says why."""
    text = text.strip()
    if not text:
        raise ValueError("an empty address")
    if text.startswith("-"):
        raise ValueError(f"{text[:60]!r} starts with '-' (it would read as an ssh option)")
    if "@" in text:
        raise ValueError(f"{text[:60]!r} names a user; give the address only and set"
                         " ssh_user for the login")
    bracketed = _BRACKETED.match(text)
    if bracketed:
        address, port = bracketed.group(1), bracketed.group(2)
        _check_ipv6(address, text)
        return address, _port(port, text) if port else None
    if text.count(":") > 1:  # a bare IPv6 address: no port can follow it unbracketed
        _check_ipv6(text, text)
        return text, None
    address, colon, port = text.partition(":")
    if not _NAME.match(address) or ".." in address:
        raise ValueError(f"{text[:60]!r} is not an address (HOST or HOST:PORT)")
    return address, _port(port, text) if colon else None


def _check_ipv6(address: str, text: str) -> None:
    try:
        ipaddress.IPv6Address(address)
    except ValueError:
        raise ValueError(f"{text[:60]!r} is not an IPv6 address") from None


def _port(port: str, text: str) -> int:
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{text[:60]!r}: the port must be a number from 1 to 65535")
    return int(port)


def from_list(entries: list[tuple[str, int]], file: str) -> tuple[list[StaticHost],
                                                                  list[PlanError]]:
    """`hosts: [...]` in the plan, as (text, line) pairs: the hosts, and every bad entry."""
    out, errors = [], []
    for text, line in entries:
        try:
            out.append(_entry(str(text), file, line))
        except InventoryError as exc:
            errors.append(exc)
    try:
        return _unique(out, strict=True), errors
    except InventoryError as exc:
        return out, [*errors, exc]


def from_file(path: Path, group: str | None, max_bytes: int) -> list[StaticHost]:
    """An inventory file: one address per line, or Ansible-style INI groups.

    Without `group`, every host of the file (sections only group them). With
    `group`, that section and the sections its `[group:children]` names.
    Ansible's per-host `ansible_host=` / `ansible_port=` are honoured, other
    variables and `[*:vars]` sections ignored (the plan's `env:` and `values:`
    carry settings here).
    """
    try:
        file = display_path(path)
    except (OSError, RuntimeError, ValueError):  # a loop of links: read_text says so
        file = str(path)
    text = read_text(path, max_bytes, file)
    groups: dict[str, list[StaticHost]] = {}
    children: dict[str, list[tuple[str, int]]] = {}
    order: list[StaticHost] = []
    section, kind = None, None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith(";"):
            continue
        header = _SECTION.match(line)
        if header:
            section, kind = header.group(1), header.group(2)
            groups.setdefault(section, [])
            if kind == "children":
                children.setdefault(section, [])
            continue
        if kind == "vars":
            continue
        if kind == "children":
            children[section].append((line.split()[0], number))
            continue
        host = _ini_host(line, file, number)
        order.append(host)
        if section is not None:
            groups[section].append(host)
    if group is None:
        hosts = order
    else:
        if group not in groups:
            known = ", ".join(sorted(groups)) or "none"
            raise InventoryError(f"no group {group!r} in the inventory (groups: {known})",
                                 file, 1)
        hosts = _group_hosts(group, groups, children, file, set())
    if not hosts:
        raise InventoryError("the inventory lists no hosts"
                             + (f" in group {group!r}" if group else ""), file, 1)
    return _unique(hosts, strict=False)


def _ini_host(line: str, file: str, number: int) -> StaticHost:
    """`NAME [ansible_host=ADDR] [ansible_port=N] [other=vars]` (or a plain address)."""
    words = line.split()
    name, variables = words[0], {}
    for word in words[1:]:
        key, eq, value = word.partition("=")
        if not eq:
            raise InventoryError(f"{word[:60]!r} is not KEY=VALUE after host {name[:60]!r}",
                                 file, number)
        variables[key] = value.strip("'\"")
    if "[" in name and ":" in name and not name.startswith("["):
        raise InventoryError(f"host ranges ({name[:60]!r}) are not supported; list each host",
                             file, number)
    host = _entry(variables.get("ansible_host", name), file, number)
    if "ansible_port" in variables:
        try:
            port = _port(variables["ansible_port"], line)
        except ValueError as exc:
            raise InventoryError(str(exc), file, number) from None
        host = StaticHost(host.address, port, file, number)
    return host


def _group_hosts(group: str, groups: dict[str, list[StaticHost]],
                 children: dict[str, list[tuple[str, int]]], file: str,
                 seen: set[str]) -> list[StaticHost]:
    seen.add(group)
    out = list(groups.get(group, []))
    for child, number in children.get(group, []):
        if child not in groups:
            raise InventoryError(f"group {group!r} names an unknown child group {child!r}",
                                 file, number)
        if child not in seen:
            out += _group_hosts(child, groups, children, file, seen)
    return out


def _entry(text: str, file: str, line: int) -> StaticHost:
    try:
        address, port = parse_address(text)
    except ValueError as exc:
        raise InventoryError(f"hosts: {exc}", file, line) from None
    return StaticHost(address, port, file, line)


def _unique(hosts: list[StaticHost], strict: bool) -> list[StaticHost]:
    """One instance per machine: an address (and port) listed twice is refused in a plan;
    in an inventory file, where several groups may hold one host, it is kept once."""
    seen: dict[tuple[str, int | None], StaticHost] = {}
    out = []
    for host in hosts:
        key = (host.address.lower(), host.port)
        if key in seen:
            if not strict:
                continue
            raise InventoryError(f"hosts: {host.address} is listed twice (also line"
                                 f" {seen[key].line})", host.file, host.line)
        seen[key] = host
        out.append(host)
    return out
