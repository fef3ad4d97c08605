"""One service entry of a plan, normalised into a `ServiceSpec`: its keys over
the plan's `defaults`, its host (rendered if it uses vars, checked as an address
or a service name), its scripts with their `args:` and `files:`, exports,
values, env, durations and provider options.

A mixin of the loader's `_Loader` (the loader reads the file and the
plan-wide parts; this reads one service): it uses the loader's `error`,
`limits`, `path`, `file` and `data`. Where a service runs is the part
plan/placement.py reads.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from cloudinitd import kinds
from cloudinitd.errors import PlanError
from cloudinitd.plan import userdata
from cloudinitd.plan.autoscale import parse_autoscale
from cloudinitd.plan.bundles import BundleError, check_bundle
from cloudinitd.plan.durations import parse_duration
from cloudinitd.plan.fields import plain, usable_as_name
from cloudinitd.plan.limits import MAX_KEY_BYTES, NOT_FOUND, file_problem
from cloudinitd.plan.model import (
    BUILTIN_ATTRIBUTES,
    SERVICE_ATTRIBUTES,
    STEPS,
    CloudSpec,
    Pos,
    ScriptSpec,
    ServiceSpec,
)
from cloudinitd.plan.placement import LAUNCH_ONLY, PlacementMixin
from cloudinitd.plan.schema import did_you_mean
from cloudinitd.plan.scripts import resolve_script
from cloudinitd.plan.yamlpos import PosDict, PosList
from cloudinitd.templates import render_vars

DEFAULT_TIMEOUT = 1200.0
_TEMPLATE_MARKS = ("{{", "{%", "{#")
# A host: an IPv4/IPv6 address, a DNS name or a service name; no spaces or shell characters.
_HOST = re.compile(r"^[A-Za-z0-9_.:%\[\]-]{1,253}$")


class ServiceMixin(PlacementMixin):
    rendering_stopped: bool  # after one template ran out of budget

    def pos(self, line: int) -> Pos:
        return Pos(self.file, line)

    def merged(self, name: str, entry: PosDict) -> tuple[dict[str, Any], dict[str, Pos]]:
        """A service's keys over the defaults, and where each one was written."""
        defaults: PosDict = self.data.get("defaults") or PosDict()
        on_host = "host" in entry or "host" in defaults or "hosts" in entry
        values: dict[str, Any] = {}
        where: dict[str, Pos] = {}
        for key, value in defaults.items():
            if on_host and key in LAUNCH_ONLY:
                continue  # defaults meant for launched services
            if key in ("cloud", "clouds") and ({"cloud", "clouds"} & set(entry)):
                continue  # the service chose its own placement
            values[key], where[key] = value, self.pos(defaults.key_line(key))
            if key == "env":
                for k in value:
                    where[f"env.{k}"] = self.pos(value.key_line(k))
        for key, value in entry.items():
            if key == "env" and "env" in values:
                value = {**values["env"], **value}
            values[key], where[key] = value, self.pos(entry.key_line(key))
            if key == "env":
                for k in entry["env"]:
                    where[f"env.{k}"] = self.pos(entry["env"].key_line(k))
        for key in ("after", "clouds"):
            items = values.get(key)
            if isinstance(items, PosList):
                for i in range(len(items)):
                    where[f"{key}[{i}]"] = self.pos(items.item_line(i))
        return values, where

    def service(
        self,
        name: str,
        entry: PosDict,
        line: int,
        plan_vars: dict[str, Any],
        clouds: dict[str, CloudSpec],
        services: PosDict,
    ) -> ServiceSpec:
        if not usable_as_name(name):
            self.error(f"service name {name!r} is reserved in templates; choose another", line)
        v, where = self.merged(name, entry)

        def at(key: str) -> int:
            return where[key].line if key in where else line

        if v.get("local") is True:
            self.local_service(name, entry, v, at)
        host = v.get("host")
        if host in services and isinstance(services[host], dict) and services[host].get("local"):
            self.error(f"service {name!r}: host {host!r} is a local service (this machine);"
                       " give this service `local: true` instead", at("host"))
        if isinstance(host, str) and any(m in host for m in _TEMPLATE_MARKS):
            # Rendered now (vars only), so SSH never sees the template text.
            rendered = self.render_field(name, "host", host, at("host"), plan_vars)
            if rendered is not None and not _HOST.match(rendered):
                self.error(f"service {name!r}: host renders to {rendered!r}, not an address "
                           "or a service name", at("host"))
            host = rendered if rendered and _HOST.match(rendered) else host
        elif isinstance(host, str) and not _HOST.match(host):
            self.error(f"service {name!r}: host {host!r} is not an address or a service name",
                       at("host"))
        if host is not None:
            # A local service's launch keys were refused just above (local_service): once.
            for key in sorted(LAUNCH_ONLY & set(entry) if v.get("local") is not True else ()):
                self.error(
                    f"service {name!r}: {key!r} does not apply to a service on an "
                    f"existing host (host: {host})",
                    entry.key_line(key),
                )
            if host == name:
                self.error(f"service {name!r}: host cannot be the service itself", at("host"))
            elif host not in services and "." not in host and ":" not in host:
                hint = did_you_mean(host, list(services))
                if hint:
                    self.error(
                        f"service {name!r}: host {host!r} is not a service{hint}; "
                        "write a full address for an existing host",
                        at("host"),
                    )

        spec = ServiceSpec(name=name, pos=self.pos(line), clouds=[], field_pos=where)
        spec.host = host
        spec.local = v.get("local") is True
        if "hosts" in v:
            self.static_hosts(name, spec, entry, v, at)
        if host is None and not spec.hosts and "hosts" not in v:
            spec.clouds = self.placements(name, v, where, clouds, line)
            spec.count = self.count(name, v.get("count", 1), at("count"), plan_vars)
            limits = [p.max for p in spec.clouds]
            if limits and -1 not in limits and spec.count > sum(limits):
                self.error(
                    f"service {name!r}: count {spec.count} is more than the clouds "
                    f"allow in total ({sum(limits)})",
                    at("count"),
                )
        if "instance_id" in v or "terminate_adopted" in v:
            self.adoption(name, spec, v, at)
        spec.image = v.get("image")
        spec.size = v.get("size")
        after = v.get("after", [])
        spec.after = [after] if isinstance(after, str) else list(after)
        spec.ssh_user = v.get("ssh_user", spec.ssh_user)
        spec.ssh_port = v.get("ssh_port", spec.ssh_port)
        if "ssh_key" in v:
            key = Path(os.path.expanduser(v["ssh_key"]))
            spec.ssh_key = key if key.is_absolute() else self.path.parent.resolve() / key
            # A missing key is no error here: it may exist only where `boot` runs, or
            # be gone when a run is terminated (the connection says so, remote/session).
            problem = file_problem(spec.ssh_key, MAX_KEY_BYTES)
            if problem not in (None, NOT_FOUND):
                self.error(f"service {name!r}: ssh_key {v['ssh_key']!r} {problem}",
                           at("ssh_key"))
        for step in STEPS:
            if step in v:
                given = v[step]
                ref = given["script"] if isinstance(given, dict) else given
                line = given.key_line("script") if isinstance(given, PosDict) else at(step)
                script = self.script(name, step, ref, line)
                if script is not None:
                    if isinstance(given, PosDict):
                        self.step_extras(name, step, script, given)
                    spec.scripts[step] = script
        spec.exports = list(dict.fromkeys(v.get("exports", [])))
        for attr in spec.exports:
            if attr in BUILTIN_ATTRIBUTES or attr in SERVICE_ATTRIBUTES:
                self.error(
                    f"service {name!r}: {attr!r} is built in; it cannot be exported", at("exports")
                )
        given = entry.get("values") or (self.data.get("defaults") or {}).get("values") or {}
        for key, value in (v.get("values") or {}).items():
            spec.values[key] = str(value).lower() if isinstance(value, bool) else str(value)
            line_at = given.key_line(key) if isinstance(given, PosDict) else at("values")
            where[f"values.{key}"] = self.pos(line_at)
            if key in BUILTIN_ATTRIBUTES or key in SERVICE_ATTRIBUTES:
                self.error(f"service {name!r}: value {key!r} is built in; choose another name",
                           line_at)
            elif key in spec.exports:
                self.error(f"service {name!r}: {key!r} is both a value and an export",
                           line_at)
        spec.env = {
            k: (str(x).lower() if isinstance(x, bool) else str(x))
            for k, x in (v.get("env") or {}).items()
        }
        spec.timeout = self.duration(name, "timeout", v, at, DEFAULT_TIMEOUT)
        spec.lifetime = self.duration(name, "lifetime", v, at, None)
        if "spot" in v:
            spec.spot = plain(v["spot"])
        spec.preserve = v.get("preserve") is True
        if "autoscale" in v and host is None:
            spec.autoscale = parse_autoscale(name, spec, v["autoscale"], at("autoscale"),
                                             self.limits.per_service, self.error, self.script)
        declared = kinds.declared()
        as_list = kinds.list_options(declared)
        for key in kinds.service_options(declared):
            if key in v:
                value = plain(v[key])
                spec.options[key] = [value] if key in as_list and isinstance(value, str) else value
        if spec.clouds:
            self.first_boot(name, spec, v, at, clouds)
        return spec

    def first_boot(self, name: str, spec: ServiceSpec, v: dict[str, Any], at: Any,
                   clouds: dict[str, CloudSpec]) -> None:
        """`user_data` (text) or `user_data_base64` (any bytes: gzip, ...) becomes the bytes
        in `spec.options["user_data"]`; each of the service's clouds must apply it, and have
        key pairs for `key_name` (plan/userdata.py; the kinds declare what they do)."""
        if userdata.TEXT_KEY in v and userdata.BASE64_KEY in v:
            self.error(f"service {name!r}: {userdata.BOTH}", at(userdata.BASE64_KEY))
        spec.options.pop(userdata.BASE64_KEY, None)
        spec.options.pop(userdata.TEXT_KEY, None)
        try:
            key, data = userdata.given(v)
        except userdata.UserDataError as exc:  # only base64 that is not
            key, data = userdata.BASE64_KEY, None
            self.error(f"service {name!r}: {exc}", at(key))
        if data is not None:
            spec.options["user_data"] = data
        declared = kinds.declared()
        problems: dict[str, str | None] = {}  # once per kind of applying (gunzip, MIME parse)
        for placement in spec.clouds:
            cloud = clouds.get(placement.cloud)
            kind = declared.get(cloud.provider) if cloud else None
            if kind is None:
                continue  # a kind that declares nothing (a plug-in) takes its options as given
            where = f"cloud {placement.cloud!r} ({kind.kind})"
            if data is not None and kind.user_data not in problems:
                problems[kind.user_data] = userdata.problem(data, kind.user_data)
            problem = problems.get(kind.user_data)
            if problem:
                self.error(f"service {name!r}: {key} on {where} {problem}", at(key or ""))
            if "key_name" in v and not kind.key_pairs:
                self.error(f"service {name!r}: key_name on {where}: this cloud has no key"
                           " pairs; its instances take the run's own key (leave key_name"
                           " out, or set it in the entry of an ec2 cloud)", at("key_name"))

    def step_extras(self, name: str, step: str, script: ScriptSpec, given: PosDict) -> None:
        """`args:` (templates, one argument each) and `files:` (checked bundles)."""
        args = given.get("args") or []
        for i, arg in enumerate(args):
            script.args.append(str(arg).lower() if isinstance(arg, bool) else str(arg))
            script.args_pos.append(self.pos(args.item_line(i) if isinstance(args, PosList)
                                            else given.key_line("args")))
        files = given.get("files") or []
        for i, ref in enumerate(files):
            line = files.item_line(i) if isinstance(files, PosList) else given.key_line("files")
            path = Path(os.path.expanduser(ref))
            path = path if path.is_absolute() else self.path.parent / path
            try:
                missing = not path.exists() and not path.is_symlink()
            except (OSError, ValueError) as exc:  # a name too long, a loop of links
                self.error(f"service {name!r}: {step} file {ref!r}: "
                           f"{getattr(exc, 'strerror', None) or exc}", line)
                continue
            if missing:
                self.error(f"service {name!r}: {step} file {ref!r} not found", line)
                continue
            try:
                check_bundle(path, self.path.parent)
            except (BundleError, OSError) as exc:
                self.error(f"service {name!r}: {step} files: {exc}", line)
                continue
            script.files.append(path.absolute())
        names = [p.name for p in script.files]
        for dup in sorted({n for n in names if names.count(n) > 1}):
            self.error(f"service {name!r}: {step} files: two entries named {dup!r}",
                       given.key_line("files"))

    def render_field(
        self, name: str, key: str, text: str, line: int, plan_vars: dict[str, Any]
    ) -> str | None:
        """A field that may use `vars` (count, host), rendered at load time in the sandbox."""
        if self.rendering_stopped:
            return None
        try:
            return render_vars(text, plan_vars, str(self.pos(line))).strip()
        except PlanError as exc:
            if "not allowed in a template" in exc.message:
                # One runaway template is reported; the others are not run too.
                self.rendering_stopped = True
            self.error(f"service {name!r}: {key}: {exc.message}", line)
            return None

    def duration(
        self, name: str, key: str, v: dict[str, Any], at: Any, default: float | None
    ) -> float | None:
        if key not in v:
            return default
        try:
            return parse_duration(v[key])
        except ValueError as exc:
            self.error(f"service {name!r}: {key}: {exc}", at(key))
            return default

    def script(self, name: str, step: str, ref: str, line: int) -> ScriptSpec | None:
        try:
            return resolve_script(self.path, name, step, ref, self.pos(line),
                                  self.limits.script_bytes)
        except PlanError as exc:
            self.errors.append(exc)
            return None
