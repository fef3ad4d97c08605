"""Where a service's instances come from, as the loader reads it: clouds (`cloud`,
`clouds`, `count`), adopted cloud instances (`instance_id`), this machine
(`local: true`) or listed existing machines (`hosts:`, see plan/inventory.py).

A mixin of the loader's `_Loader` (kept apart so the loader stays one read of
the order of checks): it uses the loader's `error`, `limits`, `path` and
`render_field`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Set
from pathlib import Path
from typing import Any

from cloudinitd import kinds
from cloudinitd.errors import PlanError
from cloudinitd.plan.inventory import from_file, from_list
from cloudinitd.plan.limits import FileRefused, Limits
from cloudinitd.plan.model import LOCAL_ADDRESS, CloudPlacement, CloudSpec, Pos, ServiceSpec
from cloudinitd.plan.schema import did_you_mean
from cloudinitd.plan.yamlpos import PosDict, PosList

# Where a service that names no cloud launches (a built-in kind declares it).
DEFAULT_CLOUD = kinds.default_cloud(kinds.BUILTIN)
# Keys that only mean something for a service that launches instances.
_PLACEMENT_KEYS = frozenset(
    {"cloud", "clouds", "image", "size", "count", "spot", "lifetime", "preserve", "autoscale"}
)


class _LaunchOnly(Set[str]):
    """The placement keys and every declared kind's service options (`user_data`, a
    plug-in's own keys), read from the declarations on each use: a kind registered
    after this module was imported counts too."""

    def _keys(self) -> frozenset[str]:
        return _PLACEMENT_KEYS | frozenset(kinds.service_options(kinds.declared()))

    def __contains__(self, key: object) -> bool:
        return key in self._keys()

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())

    @classmethod
    def _from_iterable(cls, it: Iterable[str]) -> frozenset[str]:  # `&`, `|`, `-` give sets
        return frozenset(it)


LAUNCH_ONLY: Set[str] = _LaunchOnly()


class PlacementMixin:
    limits: Limits
    path: Path
    file: str
    data: PosDict
    errors: list[PlanError]

    def error(self, message: str, line: int | None) -> None:  # pragma: no cover (the loader's)
        raise NotImplementedError

    def render_field(self, name: str, key: str, text: str, line: int,
                     plan_vars: dict[str, Any]) -> str | None:  # pragma: no cover
        raise NotImplementedError

    def static_hosts(self, name: str, spec: ServiceSpec, entry: PosDict, v: dict[str, Any],
                     at: Any) -> None:
        """`hosts:`: one instance per listed machine; `count` follows from the list."""
        if "hosts" not in entry:
            self.error(f"service {name!r}: `hosts:` names one service's machines; write it"
                       " in the service itself, not in defaults", at("hosts"))
            return
        for key in sorted(set(entry) & {"host", "local", "instance_id", "terminate_adopted"}):
            self.error(f"service {name!r}: {key!r} does not go with hosts:", entry.key_line(key))
        for key in sorted((LAUNCH_ONLY - {"count"}) & set(entry)):
            self.error(f"service {name!r}: {key!r} does not apply to a service on existing"
                       " hosts (hosts:)", entry.key_line(key))
        given, line = entry["hosts"], at("hosts")
        try:
            if isinstance(given, dict):
                path = Path(given["file"]).expanduser()
                path = path if path.is_absolute() else self.path.parent / path
                try:  # read on the opened file: limits.read_checked
                    hosts = from_file(path, given.get("group"), self.limits.plan_bytes)
                except FileRefused as exc:  # too big is a PlanError at the file's line 1
                    self.error(f"service {name!r}: hosts file {given['file']!r} {exc.problem}",
                               line)
                    return
            else:
                lines = [given.item_line(i) if isinstance(given, PosList) else line
                         for i in range(len(given))]
                hosts, bad = from_list(list(zip(given, lines, strict=True)), self.file)
                if bad:
                    self.errors.extend(bad)
                    return
        except PlanError as exc:
            self.errors.append(exc)
            return
        if len(hosts) > self.limits.per_service:
            self.error(f"service {name!r}: hosts lists {len(hosts)} machines, above the limit"
                       f" of {self.limits.per_service} instances per service (see"
                       " --max-instances)", line)
            return
        if "count" in entry and entry["count"] != len(hosts):
            self.error(f"service {name!r}: count {entry['count']!r} but hosts lists"
                       f" {len(hosts)} machine(s); leave count out (it is the number of"
                       " hosts)", entry.key_line("count"))
        spec.hosts = hosts
        spec.count = len(hosts)

    def adoption(self, name: str, spec: ServiceSpec, v: dict[str, Any], at: Any) -> None:
        """`instance_id:`: take existing instances into the run instead of launching."""
        if "hosts" in v:
            return  # static_hosts refused these keys already: one error each
        if "instance_id" not in v:
            self.error(f"service {name!r}: terminate_adopted needs instance_id",
                       at("terminate_adopted"))
            return
        ids = v["instance_id"]
        spec.adopt = [ids] if isinstance(ids, str) else [str(i) for i in ids]
        spec.terminate_adopted = v.get("terminate_adopted") is True
        if spec.host is not None:
            self.error(f"service {name!r}: instance_id adopts a cloud instance; it does not"
                       " go with host or local", at("instance_id"))
            return
        if len(spec.clouds) != 1:
            self.error(f"service {name!r}: instance_id needs exactly one cloud (cloud: NAME)",
                       at("instance_id"))
        if "count" in v and spec.count != len(spec.adopt):
            self.error(f"service {name!r}: count {spec.count} but {len(spec.adopt)}"
                       " instance id(s)", at("count"))
        if len(set(spec.adopt)) != len(spec.adopt):
            self.error(f"service {name!r}: an instance id is listed twice", at("instance_id"))
        spec.count = len(spec.adopt)

    def local_service(self, name: str, entry: PosDict, v: dict[str, Any], at: Any) -> None:
        """`local: true`: this machine, declared by the service itself (never by defaults)."""
        if "local" not in entry:
            self.error(f"service {name!r}: `local: true` runs steps on this machine; write it"
                       " in the service itself, not in defaults", at("local"))
        for key in sorted(set(entry) & (LAUNCH_ONLY | {"host", "ssh_user", "ssh_key",
                                                        "ssh_port"})):
            self.error(f"service {name!r}: {key!r} does not apply to a local service",
                       entry.key_line(key))
        v["host"] = LOCAL_ADDRESS

    def placements(
        self,
        name: str,
        v: dict[str, Any],
        where: dict[str, Pos],
        clouds: dict[str, CloudSpec],
        line: int,
    ) -> list[CloudPlacement]:
        if "cloud" in v and "clouds" in v:
            self.error(f"service {name!r}: use 'cloud' or 'clouds', not both", where["clouds"].line)
            return []
        if "clouds" in v:
            wanted = [
                (c["cloud"], c.get("max", -1), where[f"clouds[{i}]"].line)
                for i, c in enumerate(v["clouds"])
            ]
        else:
            cloud = v.get("cloud", DEFAULT_CLOUD)
            wanted = [(cloud, -1, where["cloud"].line if "cloud" in where else line)]
        out: list[CloudPlacement] = []
        for cloud, limit, at in wanted:
            if cloud not in clouds:
                hint = (
                    did_you_mean(cloud, sorted(clouds)) or f" (known: {', '.join(sorted(clouds))})"
                )
                self.error(f"service {name!r}: unknown cloud {cloud!r}{hint}", at)
            elif any(p.cloud == cloud for p in out):
                self.error(f"service {name!r}: cloud {cloud!r} listed twice", at)
            else:
                out.append(CloudPlacement(cloud, limit))
        return out

    def count(self, name: str, value: Any, line: int, plan_vars: dict[str, Any]) -> int:
        if isinstance(value, int):
            number = value
            text = str(value)
        else:
            rendered = self.render_field(name, "count", value, line, plan_vars)
            if rendered is None:
                return 0
            text = rendered
            try:
                number = int(text) if len(text) <= 20 else -1
            except ValueError:
                number = -1
        if number < 0:
            self.error(f"service {name!r}: count must be a whole number >= 0, got {text!r}", line)
            return 0
        if number > self.limits.per_service:
            self.error(
                f"service {name!r}: count {number} is above the limit of "
                f"{self.limits.per_service} instances per service (see --max-instances)",
                line,
            )
            return 0
        return number

