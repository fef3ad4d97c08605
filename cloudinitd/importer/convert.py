"""An original plan (read by `original`) as a cloudinitd plan directory.

Levels become `after:` edges where no data reference already orders two
services; IaaS settings become cloud entries holding credential
*references* only; programs ship inside generated step scripts (`wrapper`).
What cannot be said in the new language is a Note with the original
FILE:LINE; an essential one makes the conversion fail.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from cloudinitd import kinds
from cloudinitd.errors import UsageError
from cloudinitd.importer.original import Note, OrigPlan, OrigService, _at
from cloudinitd.importer.refs import RefError, Refs, is_value_name
from cloudinitd.importer.wrapper import program_name, step_script
from cloudinitd.plan.bundles import MAX_BUNDLE_BYTES
from cloudinitd.plan.fields import usable_as_name
from cloudinitd.plan.limits import FileRefused, copy_checked

_HEADER = "# Converted by `cloudinitd import`"
_NOT_NAME = re.compile(r"[^A-Za-z0-9_]")
_STEPS = (("boot", "bootpgm"), ("ready", "readypgm"), ("terminate", "terminatepgm"))


def plan_names(plan: OrigPlan) -> dict[str, str]:
    """Service names the new language accepts: `web-server` -> `web_server`."""
    names: dict[str, str] = {}
    taken: dict[str, str] = {}
    for name, svc in plan.services.items():
        new = _NOT_NAME.sub("_", name)
        if not new[:1].isalpha():
            new = "s_" + new
        if not usable_as_name(new):  # `vars`, `self`, `range`...: template names
            new += "_svc"
        if new in taken:
            plan.note(svc.where, f"service {name!r} and {taken[new]!r} would both be named"
                      f" {new!r} in the converted plan", essential=True)
        taken[new] = name
        names[name] = new
        if new != name:
            plan.note(svc.where, f"service {name!r} is named {new!r} in the converted plan")
    return names


def _launches(svc: OrigService) -> bool:
    flag = svc.get("iaas_launch")
    if flag is not None:
        return flag.strip().lower() == "true"
    return svc.get("hostname") is None


class _Converter:
    def __init__(self, plan: OrigPlan, environ: Mapping[str, str]):
        self.plan = plan
        self.environ = environ
        self.names = plan_names(plan)
        self.refs = Refs(plan, self.names)
        self.clouds: dict[str, dict[str, Any]] = {}
        self.cloud_keys: dict[tuple, str] = {}
        self.scripts: dict[str, str] = {}
        self.programs: dict[Path, str] = {}  # source -> plan-relative copy
        self.program_where: dict[Path, str] = {}  # source -> FILE:LINE that names it

    def note(self, where: str, message: str, essential: bool = False) -> None:
        self.plan.notes.append(Note(where, message, essential))

    def static(self, svc: OrigService, key: str) -> str:
        try:
            return self.refs.static(svc.get(key) or "")
        except RefError as e:
            self.note(svc.where_of(key), f"{key}: {e}", essential=True)
            return ""

    def cloud(self, svc: OrigService) -> str | None:
        iaas = svc.get("iaas") or "us-east-1"
        if iaas.startswith("libcloud-"):
            self.note(svc.where_of("iaas"), f"iaas {iaas}: libcloud drivers have no cloudinitd"
                      " provider", essential=True)
            return None
        url = svc.get("iaas_url")
        creds: dict[str, str] = {}
        key, secret = svc.settings.get("iaas_key"), svc.settings.get("iaas_secret")
        if key and secret and key.env_var and secret.env_var:
            creds = {"access_key_env": key.env_var, "secret_key_env": secret.env_var}
        elif key or secret:
            where = (key or secret).where  # type: ignore[union-attr]
            self.note(where, "iaas_key/iaas_secret: a literal credential is not copied into"
                      " the plan; give both as env.VAR (the cloud entry now uses the default"
                      " AWS credential chain)")
        ident = (iaas, url, tuple(sorted(creds.items())))
        if ident not in self.cloud_keys:
            # The original's `iaas:` clouds are EC2-style APIs: a cloud of the iaas kind.
            kind = kinds.iaas_kind(kinds.BUILTIN)
            base = (svc.get("cloud") or f"cloud-{kind}")[len("cloud-"):] or kind
            name, n = base, 2
            while name in self.clouds:
                name, n = f"{base}-{n}", n + 1
            entry: dict[str, Any] = {"provider": kind, "region": iaas}
            if url:
                entry["endpoint"] = self.static(svc, "iaas_url")
            if creds:
                entry["credentials"] = creds
            self.clouds[name] = entry
            self.cloud_keys[ident] = name
        return self.cloud_keys[ident]

    def service(self, svc: OrigService) -> dict[str, Any]:
        out: dict[str, Any] = {}
        name = self.names[svc.name]
        local = (svc.get("local_exe") or "").strip().lower() == "true"
        if svc.get("instanceid") and (local or not _launches(svc)):
            self.note(svc.where_of("instanceid"), "instanceid: unused on an existing host")
        if local:
            # The original ran every step here, from a stage folder: `local: true`.
            out["local"] = True
            for key in ("image", "hostname"):
                if svc.get(key) and key in svc.settings:
                    self.note(svc.where_of(key), f"{key}: unused, local_exe runs on this machine")
        elif _launches(svc):
            if not svc.get("image"):
                self.note(svc.where, f"[svc-{svc.name}]: neither image nor hostname is set"
                          " (the original refused this too)", essential=True)
            else:
                out["image"] = self.static(svc, "image")
            cloud = self.cloud(svc)
            if cloud:
                out["cloud"] = cloud
            if svc.get("allocation"):
                out["size"] = svc.get("allocation")
            if svc.get("sshkeyname"):
                out["key_name"] = svc.get("sshkeyname")
            if svc.get("securitygroups"):
                groups = [g.strip() for g in (svc.get("securitygroups") or "").split(",")]
                out["security_groups"] = [g for g in groups if g]
            if svc.get("hostname"):
                self.note(svc.where_of("hostname"), "hostname: ignored, iaas_launch is true")
            if svc.get("instanceid"):
                # The original ignored it; here it adopts that instance (kept at terminate).
                ids = (svc.get("instanceid") or "").split()
                out["instance_id"] = ids[0] if len(ids) == 1 else ids
        else:
            host = self.host(svc)
            if not host:
                self.note(svc.where_of("iaas_launch"), "iaas_launch is false but no hostname"
                          " is set", essential=True)
            hostpart, _, port = host.rpartition(":")
            if port.isdigit() and hostpart and ":" not in hostpart:
                out["host"], out["ssh_port"] = hostpart, int(port)
            else:
                out["host"] = host
        if svc.count > 1 and not local:
            out["count"] = svc.count
        user = svc.get("ssh_username")
        if local:
            pass  # no login: the steps run here as this user
        elif user:
            out["ssh_user"] = user
        elif not _launches(svc) and self.environ.get("USER"):
            # The original's ssh ran without -u: this machine's user name.
            out["ssh_user"] = self.environ["USER"]
        scp = svc.get("scp_username")
        if scp and scp != user and not local:
            self.note(svc.where_of("scp_username"), "scp_username: files go with the step over"
                      f" one login, as {user or 'the ssh user'}")
        if "localsshkeypath" in svc.paths and not local:
            out["ssh_key"] = str(svc.paths["localsshkeypath"])
        timeout = svc.get("pgm_timeout") or "1200"
        try:
            out["timeout"] = max(1, int(float(timeout)))
        except ValueError:
            self.note(svc.where_of("pgm_timeout"), f"pgm_timeout {timeout!r} is not a number",
                      essential=True)
        values = {k: v for k, v in svc.deps.items() if is_value_name(k)}
        if values:
            out["values"] = {}
            for k, v in values.items():
                try:
                    out["values"][k] = self.refs.template(v.text, svc)
                except RefError as e:
                    self.note(v.where, str(e), essential=True)
        for step, key in _STEPS:
            if key not in svc.paths:
                if svc.get(f"{key}_args"):
                    self.note(svc.where_of(f"{key}_args"), f"{key}_args without {key}: unused")
                continue
            path = f"scripts/{name}.{step}.sh.j2"
            program = self.program(svc.paths[key])
            self.program_where.setdefault(svc.paths[key], svc.where_of(key))
            try:
                text, args = step_script(svc, step, self.refs, Path(program).name)
            except RefError as e:
                self.note(svc.where_of(e.key or f"{key}_args"), str(e), essential=True)
                continue
            self.scripts[path] = text
            entry: dict[str, Any] = {"script": path}
            if args:
                entry["args"] = args
            entry["files"] = [program]
            out[step] = entry
        if "bootconf" in svc.paths and "bootpgm" not in svc.paths:
            self.note(svc.where_of("bootconf"), "bootconf without bootpgm: unused")
        return out

    def program(self, source: Path) -> str:
        """The plan-relative path the program is copied to (one copy per source file)."""
        if source in self.programs:
            return self.programs[source]
        name = program_name(source)
        rel, n = f"programs/{name}", 2
        while rel in self.programs.values():
            rel, n = f"programs/{n}/{name}", n + 1
        self.programs[source] = rel
        return rel

    def host(self, svc: OrigService) -> str:
        """hostname: an address, `${global.x}`, or `${other.hostname}` (that service's host)."""
        text = (svc.get("hostname") or "").strip()
        m = re.fullmatch(r"\$\{([^.}]+)\.hostname\}", text)
        if m and m.group(1) in self.names and m.group(1) != svc.name:
            other = self.names[m.group(1)]
            self.refs.reads.setdefault(svc.name, set()).add(other)
            return other
        try:
            return self.refs.static(text)
        except RefError as e:
            self.note(svc.where_of("hostname"), f"hostname: {e}", essential=True)
            return text

    def convert(self) -> dict[str, Any]:
        services: dict[str, dict[str, Any]] = {}
        for level in self.plan.levels:
            for orig in level:
                services[self.names[orig]] = self.service(self.plan.services[orig])
        self.order(services)
        for name, attrs in self.refs.exports.items():
            services[name]["exports"] = sorted(attrs)
        doc: dict[str, Any] = {"name": _plan_name(self.plan.top)}
        if self.plan.globals:
            doc["vars"] = {k: v.text for k, v in self.plan.globals.items()}
        if self.clouds:
            doc["clouds"] = self.clouds
        doc["services"] = services
        return doc

    def order(self, services: dict[str, dict[str, Any]]) -> None:
        """Level N waits for level N-1: an `after:` edge where no reference orders them yet."""
        level_of = {self.names[s.name]: s.level for s in self.plan.services.values()}
        previous: list[str] = []
        for level in self.plan.levels:
            names = [self.names[n] for n in level]
            for name in names:
                reads = self.refs.reads.get(self._orig(name), set())
                for other in sorted(reads):
                    if level_of[other] > level_of[name]:
                        svc = self.plan.services[self._orig(name)]
                        self.note(svc.where, f"{name} reads {other}, which boots in a later"
                                  " level", essential=True)
                after = [p for p in previous if p not in reads]
                if after:
                    services[name]["after"] = after
            if names:
                previous = names

    def _orig(self, name: str) -> str:
        return next(o for o, n in self.names.items() if n == name)


def _plan_name(top: Path) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", top.parent.name + "-" + top.stem).strip("-.")
    return name if name[:1].isalnum() else "imported-" + name


def _copy_program(source: Path, target: Path, where: str) -> None:
    """Copy a program checked when the plan was read, checked again on the opened file
    (swapped for a FIFO it would block, for /dev/zero fill the disk): at most its limit."""
    try:
        mode = copy_checked(source, target, MAX_BUNDLE_BYTES)  # stops past it (it may grow)
    except FileRefused as e:
        target.unlink(missing_ok=True)
        raise _at(where, f"cannot copy program {source}: {e.strerror}") from None
    os.chmod(target, stat.S_IMODE(mode))


def convert_plan(plan: OrigPlan, out: Path, environ: Mapping[str, str] | None = None) -> Path:
    """Write plan.yml and its scripts under `out`; the Notes are added to `plan.notes`."""
    conv = _Converter(plan, os.environ if environ is None else environ)
    doc = conv.convert()
    previous = out / "plan.yml"
    if previous.exists() and not previous.read_text(errors="replace").startswith(_HEADER):
        # Never overwrite (or clean the programs/ of) a plan someone else wrote.
        raise UsageError(f"{out} already holds a plan.yml not made by `cloudinitd import`;"
                         " choose another -o DIR")
    out.mkdir(parents=True, exist_ok=True)
    (out / "scripts").mkdir(exist_ok=True)
    for old in (out / "scripts").glob("*.sh.j2"):
        if f"scripts/{old.name}" not in conv.scripts:
            old.unlink()
    for rel, text in conv.scripts.items():
        (out / rel).write_text(text)
    if (out / "programs").exists():
        shutil.rmtree(out / "programs")  # a fresh copy each import
    for source, rel in conv.programs.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        _copy_program(source, out / rel, conv.program_where[source])
    header = (f"{_HEADER} from {plan.top}.\n"
              "# Edit this plan, or re-run the import after changing the original.\n")
    plan_path = out / "plan.yml"
    plan_path.write_text(header + yaml.safe_dump(doc, sort_keys=False, width=100))
    return plan_path
