"""An original cloudinit.d launch plan, read with the original's rules.

Top file: `[runlevels]` (keys `levelN`, ordered by N, paths relative to the
top file), optional `[defaults]`, `[cloud-*]`, `[globals]`. Level files:
`[svc-NAME]` sections. A service key wins over its `cloud:` section (for the
IaaS and login keys only), which wins over `[defaults]`; an empty value is
unset. A value that is exactly `env.VAR` is read from the environment
(unset: unset), except credentials, which stay the variable's NAME.
Program, bootconf, key and deps paths are relative to the LEVEL file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cloudinitd.errors import PlanError
from cloudinitd.importer.ini import IniFile, parse_ini, read_ini
from cloudinitd.plan.bundles import MAX_BUNDLE_BYTES
from cloudinitd.plan.limits import (
    MAX_KEY_BYTES,
    MAX_PLAN_BYTES,
    MAX_SCRIPT_BYTES,
    NOT_FOUND,
    FileRefused,
    file_problem,
    read_checked,
)

CLOUD_KEYS = ("iaas", "iaas_url", "iaas_key", "iaas_secret", "sshkeyname", "localsshkeypath",
              "ssh_username", "scp_username", "securitygroups")
DEFAULT_KEYS = CLOUD_KEYS + (
    "image", "allocation", "bootconf", "bootpgm", "bootpgm_args", "readypgm", "readypgm_args",
    "terminatepgm", "terminatepgm_args", "pgm_timeout", "local_exe")
SERVICE_KEYS = DEFAULT_KEYS + ("hostname", "iaas_launch", "replica_count", "cloud",
                               "instanceid")
PATH_KEYS = ("bootconf", "bootpgm", "readypgm", "terminatepgm", "localsshkeypath")
CREDENTIAL_KEYS = ("iaas_key", "iaas_secret")
# Keys the original read nowhere (it ignored them silently); we say so.
KNOWN_IGNORED = {"instanceip": "the original ignored it; use hostname:",
                 "test": "the original ignored it", "tests": "the original ignored it",
                 "sublevel": "the original ignored it", "keepalive": "the original ignored it"}
_ENV_VALUE = re.compile(r"^env\.([A-Za-z_][A-Za-z0-9_]*)$")


@dataclass
class Value:
    text: str
    where: str  # FILE:LINE it came from
    env_var: str | None = None  # set when the text is `env.VAR`


@dataclass
class Note:
    where: str
    message: str
    essential: bool = False

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass
class OrigService:
    name: str
    where: str  # its [svc-NAME] header
    level: int  # position in the run order (0 = first)
    level_file: Path
    settings: dict[str, Value] = field(default_factory=dict)
    deps: dict[str, Value] = field(default_factory=dict)
    paths: dict[str, Path] = field(default_factory=dict)
    count: int = 1

    def get(self, key: str) -> str | None:
        v = self.settings.get(key)
        return v.text if v else None

    def where_of(self, key: str) -> str:
        v = self.settings.get(key)
        return v.where if v else self.where


@dataclass
class OrigPlan:
    top: Path
    globals: dict[str, Value] = field(default_factory=dict)
    levels: list[list[str]] = field(default_factory=list)
    services: dict[str, OrigService] = field(default_factory=dict)
    notes: list[Note] = field(default_factory=list)
    env_read: set[str] = field(default_factory=set)

    def note(self, where: str, message: str, essential: bool = False) -> None:
        self.notes.append(Note(where, message, essential))


class _Reader:
    def __init__(self, top: Path, environ: Mapping[str, str], globals_files: list[Path]):
        self.environ = environ
        self.globals_files = globals_files
        self.plan = OrigPlan(top)
        self.top = read_ini(top, "top-level plan file")

    def value(self, ini: IniFile, section: str, key: str) -> Value | None:
        """A setting as the original's config_get_or_none saw it (None = unset)."""
        text = ini.get(section, key)
        if not text:
            return None
        where = ini.where(section, key)
        m = _ENV_VALUE.match(text.strip())
        if m:
            var = m.group(1)
            if key in CREDENTIAL_KEYS:
                return Value(text, where, var)  # a reference; the value is never read
            self.plan.env_read.add(var)
            text = self.environ.get(var, "")
            if not text:
                return None
            return Value(text, where, var)
        return Value(text, where)

    def read(self) -> OrigPlan:
        top, plan = self.top, self.plan
        if not top.has("runlevels"):
            raise PlanError("no [runlevels] section: an original plan needs one", str(top.path),
                            1)
        if top.has("globals"):
            for key, text in top.items("globals"):
                plan.globals[key] = Value(text, top.where("globals", key))
        for path in self.globals_files:  # the original's -G FILE: ranks above the top file
            extra = read_ini(Path(path), "globals file")
            if not extra.has("globals"):
                raise PlanError("a globals file needs a [globals] section", str(path), 1)
            for key, text in extra.items("globals"):
                plan.globals[key] = Value(text, extra.where("globals", key))
        clouds = {s: s for s in top.sections() if s.startswith("cloud-")}
        ordered: list[tuple[int, str, Path]] = []
        for key, text in top.items("runlevels"):
            if not key.startswith("level"):
                plan.note(top.where("runlevels", key), f"[runlevels] {key}: ignored (not levelN)")
                continue
            try:
                order = int(key[len("level"):])
            except ValueError:
                raise PlanError(f"[runlevels] {key}: level keys are `level` and a number",
                                str(top.path), top.line("runlevels", key)) from None
            path = _resolved(top.path.parent, text, top.where("runlevels", key), key)
            ordered.append((order, key, path))
        ordered.sort()
        for position, (_, key, path) in enumerate(ordered):
            names: list[str] = []
            try:  # checked on the opened file, once: the answer and the text together
                data = read_checked(path, MAX_PLAN_BYTES)
            except FileRefused as e:
                if e.problem != NOT_FOUND:
                    raise _at(top.where("runlevels", key),
                              f"{key}: level file {path} {e.problem}") from None
                plan.note(top.where("runlevels", key), f"level file {path} is missing:"
                          " an empty level (as the original did)")
            else:
                ini = parse_ini(path, data)
                for section in ini.sections():
                    if not section.startswith("svc-"):
                        plan.note(ini.where(section), f"[{section}] ignored: a level file"
                                  " holds [svc-NAME] sections")
                        continue
                    names.append(self.service(ini, section, position, clouds))
            plan.levels.append(names)
        return plan

    def service(self, ini: IniFile, section: str, level: int, clouds: dict[str, str]) -> str:
        name = section[len("svc-"):]
        if name in self.plan.services:
            raise PlanError(f"service {name!r} is defined twice (also at"
                            f" {self.plan.services[name].where})", str(ini.path),
                            ini.line(section))
        svc = OrigService(name, ini.where(section), level, ini.path)
        cloud = self.value(ini, section, "cloud")
        if cloud and cloud.text not in clouds:
            raise PlanError(f"cloud: {cloud.text!r} is not a [cloud-*] section of the top file",
                            str(ini.path), ini.line(section, "cloud"))
        for key in SERVICE_KEYS:
            v = self.value(ini, section, key)
            if v is None and cloud and key in CLOUD_KEYS:
                v = self.value(self.top, cloud.text, key)
            if v is None and key in DEFAULT_KEYS and self.top.has("defaults"):
                v = self.value(self.top, "defaults", key)
            if v is not None:
                svc.settings[key] = v
        for key, _ in ini.items(section):
            if key not in SERVICE_KEYS and not key.startswith("deps"):
                why = KNOWN_IGNORED.get(key, "not a key the original read; ignored")
                self.plan.note(ini.where(section, key), f"[{section}] {key}: {why}")
        for key in PATH_KEYS:
            if key in svc.settings:
                svc.paths[key] = self.path(svc, key, svc.settings[key])
        count = svc.get("replica_count")
        if count is not None:
            try:
                svc.count = max(1, int(count))
            except ValueError:
                raise PlanError(f"replica_count {count!r} is not a whole number", str(ini.path),
                                ini.line(section, "replica_count")) from None
        for key in sorted(k for k, _ in ini.items(section) if k.startswith("deps")):
            v = self.value(ini, section, key)
            if v is None:
                continue
            path = _resolved(svc.level_file.parent, v.text.strip(), v.where, key)
            deps = parse_ini(path, _read_deps(key, path, v.where))
            if not deps.has("deps"):
                raise PlanError("a deps file needs a [deps] section", str(path), 1)
            for dkey, _ in deps.items("deps"):
                dv = self.value(deps, "deps", dkey)
                if dv is not None:
                    svc.deps.pop(dkey, None)
                    svc.deps[dkey] = dv
        self.plan.services[name] = svc
        return name

    def path(self, svc: OrigService, key: str, v: Value) -> Path:
        """A program, bootconf or key: checked here, read later by a checked reader
        (convert's copy, wrapper's bootconf, the connection's key)."""
        path = _resolved(svc.level_file.parent, v.text.strip(), v.where, key)
        problem = file_problem(path, PATH_LIMITS.get(key, MAX_PLAN_BYTES))
        if problem:
            raise _file_error(key, path, problem, v.where)
        return path


def _read_deps(key: str, path: Path, where: str) -> bytes:
    """A deps file's bytes, checked on the opened file (one check, no second stat)."""
    try:
        return read_checked(path, MAX_PLAN_BYTES)
    except FileRefused as e:
        raise _file_error(key, path, e.problem, where) from None


def _file_error(key: str, path: Path, problem: str, where: str) -> PlanError:
    if problem == NOT_FOUND:
        return _at(where, f"{key}: file {path} does not exist")
    return _at(where, f"{key}: file {path} {problem}")


# How big a file each key may name: programs ship as the new format's bundles do,
# a bootconf is rendered into a script, a key is an SSH key; deps and level files
# are plan text.
PATH_LIMITS = {"bootpgm": MAX_BUNDLE_BYTES, "readypgm": MAX_BUNDLE_BYTES,
               "terminatepgm": MAX_BUNDLE_BYTES, "bootconf": MAX_SCRIPT_BYTES,
               "localsshkeypath": MAX_KEY_BYTES}


def _at(where: str, message: str) -> PlanError:
    file, _, line = where.rpartition(":")
    return PlanError(message, file or where, int(line) if line.isdigit() else None)


def _resolved(folder: Path, text: str, where: str, key: str) -> Path:
    """`text` (a file name from a .conf) as an absolute path; a name no file system
    takes (a NUL byte, a loop of links) is a PlanError at `where`."""
    try:
        return (folder / os.path.expanduser(text)).resolve()
    except (OSError, ValueError, RuntimeError) as exc:  # RuntimeError: a loop of links
        raise _at(where, f"{key}: {getattr(exc, 'strerror', None) or exc}") from None


def read_original(top: Path, environ: Mapping[str, str] | None = None,
                  globals_files: list[Path] | None = None) -> OrigPlan:
    """Read TOP.conf and everything it names; PlanError (FILE:LINE) on what the original refused."""
    return _Reader(Path(top).resolve(), os.environ if environ is None else environ,
                   list(globals_files or [])).read()
