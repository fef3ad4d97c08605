"""Rendering boot / ready / terminate scripts and env values with Jinja2.

A template sees `vars`, `run`, `self` (this instance), `env` (the service's
rendered env values) and every service by name (`head.address`,
`compute.instances`). Undefined names fail loudly (StrictUndefined) with the
service, the template file, its line and the name.

Shell scripts are rendered so that every `{{ ... }}` value is shell-quoted,
unless marked `|safe`: a value from another machine (an exported attribute)
can never inject a command. Only files ending in `.j2` are templates; other
scripts are sent verbatim (a plain shell script may well contain `{#`).
"""

from __future__ import annotations

import ipaddress
import os
import shlex
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError, TemplateSyntaxError, nodes
from jinja2.exceptions import SecurityError, TemplateRuntimeError
from jinja2.utils import generate_lorem_ipsum, missing
from markupsafe import Markup

from cloudinitd.errors import PlanError
from cloudinitd.paths import display_path
from cloudinitd.plan.model import BUILTIN_ATTRIBUTES, Plan, ScriptSpec, ServiceSpec
from cloudinitd.sandbox import BoundedSandbox, bound_tree, render_bounded
from cloudinitd.secretcheck import secret_key_name

# Names every template may use besides the services. `home` is the run's
# home share (host, port, user, dir, key, known_host: see homeshare.py),
# given by the engine through `extra` to the runs that use it.
# `environ` is this machine's environment (`env` was taken: the service's env values).
CONTEXT_NAMES = frozenset({"vars", "run", "self", "env", "home", "environ"})
Extra = Mapping[str, Any] | None
TEMPLATE_SUFFIX = ".j2"
_SHELL_SUFFIXES = frozenset({"", ".sh", ".bash"})
# Placeholder addresses for dry runs: the documentation ranges (RFC 5737),
# which belong to nobody and are never contacted.
_TEST_NETS = [
    ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")
]


def is_template(path: Path | str) -> bool:
    return str(path).endswith(TEMPLATE_SUFFIX)


def is_shell_script(path: Path | str) -> bool:
    """A `.sh` template (or one with no suffix): its values get shell-quoted."""
    name = Path(path).name
    if name.endswith(TEMPLATE_SUFFIX):
        name = name[: -len(TEMPLATE_SUFFIX)]
    return Path(name).suffix in _SHELL_SUFFIXES


class _Undefined(StrictUndefined):
    """StrictUndefined whose message names the full expression (`head.export_dir`)."""

    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        if self._undefined_hint:
            return self._undefined_hint
        name, obj = self._undefined_name, self._undefined_obj
        label = getattr(obj, "_cid_label", None)
        if obj is missing:
            what = "self" if name == _SELF else str(name)
        elif label is None:
            what = f"{name!r} of a {type(obj).__name__} value"
            return f"undefined {what}"
        elif isinstance(name, str):
            what = f"{label}.{name}"
        else:
            what = f"{label}[{name!r}]"
        return f"undefined {what!r}"


class _Labelled(dict):
    """A dict (vars, env) that knows its name, for error messages."""

    def __init__(self, label: str, data: Mapping[str, Any]):
        super().__init__(data)
        self._cid_label = label


class _LabelledList(list):
    def __init__(self, label: str, items: list[Any]):
        super().__init__(items)
        self._cid_label = label


class InstanceView:
    """One instance's attributes, as `c.address` / `c["address"]` in a template."""

    def __init__(self, label: str, attrs: Mapping[str, Any]):
        self._cid_label = label
        self._attrs = dict(attrs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._attrs[name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, name: str) -> Any:
        return self._attrs[name]

    def __str__(self) -> str:
        raise TemplateRuntimeError(
            f"'{self._cid_label}' is an instance, not a value: use {self._cid_label}.address "
            "or another attribute"
        )


class ServiceView:
    """A service: `.instances`, `.count`, and for one instance its attributes directly."""

    def __init__(self, name: str, instances: list[Mapping[str, Any]]):
        self._cid_label = name
        self._instances = _LabelledList(
            f"{name}.instances",
            [InstanceView(f"{name}.instances[{i}]", a) for i, a in enumerate(instances)],
        )

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if name == "instances":
            return self._instances
        if name == "count":
            return len(self._instances)
        if len(self._instances) == 1:
            return getattr(self._instances[0], name)
        known = set(BUILTIN_ATTRIBUTES)
        for inst in self._instances:
            known.update(inst._attrs)
        if name in known:
            svc = self._cid_label
            raise TemplateRuntimeError(
                f"service '{svc}' has {len(self._instances)} instances: use "
                f"{svc}.instances (e.g. {{% for i in {svc}.instances %}}{{{{ i.{name} }}}}"
                f"{{% endfor %}}), not {svc}.{name}"
            )
        raise AttributeError(name)

    def __getitem__(self, name: str) -> Any:
        try:
            return self.__getattr__(name)
        except AttributeError:
            raise KeyError(name) from None

    def __str__(self) -> str:
        raise TemplateRuntimeError(
            f"'{self._cid_label}' is a service, not a value: use {self._cid_label}.address "
            "or another attribute"
        )


class SelfView(InstanceView):
    """This instance, plus `self.instances` / `self.count` of its service."""

    def __init__(self, service: ServiceView, attrs: Mapping[str, Any]):
        super().__init__("self", attrs)
        self._service = service

    def __getattr__(self, name: str) -> Any:
        if name in ("instances", "count") and name not in self._attrs:
            return getattr(self._service, name)
        return super().__getattr__(name)


def _shell_finalize(value: Any) -> Any:
    """Quote every printed value for the shell unless it was marked safe."""
    if isinstance(value, Markup):
        return str(value)
    return shlex.quote(str(value))


def _shquote(value: Any) -> Markup:
    return Markup(shlex.quote(str(value)))


def _clamp(value: Any, low: int, high: int) -> int:
    return sorted((low, int(value), high))[1]


def _lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:  # noqa: A002
    """Jinja's `lipsum`, with sizes a template cannot blow up (it would run for minutes)."""
    return generate_lorem_ipsum(n=_clamp(n, 0, 100), html=bool(html), min=_clamp(min, 1, 1000),
                                max=_clamp(max, 1, 1000))


def _make_env(shell: bool) -> BoundedSandbox:
    # Every template renders in the sandbox: a plan cannot run code on this machine.
    env = BoundedSandbox(
        undefined=_Undefined,
        keep_trailing_newline=True,
        autoescape=False,
        finalize=_shell_finalize if shell else None,
    )
    env.add_filter("shquote", _shquote)
    env.globals["lipsum"] = _lipsum
    return env


SHELL_ENV = _make_env(shell=True)
RAW_ENV = _make_env(shell=False)


# Jinja reserves `self` (a TemplateReference for blocks); plans use it for
# "this instance", so templates are compiled with `self` renamed to this.
_SELF = "cid_self_"


@lru_cache(maxsize=256)
def _compile(source: str, filename: str, shell: bool) -> Template:
    env = SHELL_ENV if shell else RAW_ENV
    tree = env.parse(source, filename=filename)
    for node in tree.find_all(nodes.Name):
        if node.name == "self":
            node.name = _SELF
    bound_tree(tree)
    code = env.compile(tree, filename=filename)
    return env.template_class.from_code(env, code, env.make_globals(None), None)


def _template_line(exc: BaseException, filename: str) -> int | None:
    """The template line an error came from (Jinja rewrites tracebacks to point there)."""
    if isinstance(exc, TemplateSyntaxError) and exc.lineno:
        return exc.lineno
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _reason(exc: BaseException) -> str:
    if isinstance(exc, SecurityError):
        return f"not allowed in a template: {(exc.message or type(exc).__name__).rstrip('.')}"
    if isinstance(exc, TemplateError):
        return exc.message or type(exc).__name__
    if isinstance(exc, RecursionError):
        return "template recursion too deep"
    if isinstance(exc, MemoryError):
        return "template needs too much memory"
    return f"{type(exc).__name__}: {exc}"


def _render(
    text: str,
    filename: str,
    shell: bool,
    context: dict[str, Any],
    suffix: str,
) -> str:
    try:
        return render_bounded(_compile(text, filename, shell), context)
    except PlanError:
        raise
    except Exception as exc:  # any failure inside a template (even MemoryError) is a plan problem
        line = _template_line(exc, filename)
        raise PlanError(f"{_reason(exc)}{suffix}", filename, line) from None


def _service_name(service: str | ServiceSpec) -> str:
    return service.name if isinstance(service, ServiceSpec) else service


def _instance(instances: list[Mapping[str, Any]], index: int) -> Mapping[str, Any] | None:
    """The instance with replica index `index` (indexes have gaps after scaling down)."""
    for attrs in instances:
        if attrs.get("index") == index:
            return attrs
    if 0 <= index < len(instances) and "index" not in instances[index]:
        return instances[index]
    return None


def _environ() -> _Labelled:
    """`{{ environ.NAME }}`: this machine's environment, read when a template renders.

    A missing name is an undefined-variable error at the template line unless
    the template gives a default (`environ.NAME | default("x")`). Variables
    named like secrets (`*_SECRET*`, `*PASSWORD*`, `*TOKEN*`, ...) are left out:
    credentials stay references in cloud entries, never text in a script.
    """
    return _Labelled("environ", {k: v for k, v in os.environ.items()
                                 if not secret_key_name(k)})


def _context(
    plan: Plan,
    run: str,
    name: str,
    index: int,
    world: Mapping[str, list[Mapping[str, Any]]],
    extra: Extra = None,
) -> dict[str, Any]:
    views = {svc: ServiceView(svc, list(world.get(svc, []))) for svc in plan.services}
    own = list(world.get(name, []))
    mine = _instance(own, index)
    if mine is None:
        raise PlanError(f"service '{name}' has no instance {index} to render for")
    ctx: dict[str, Any] = dict(views)
    ctx.update(vars=_Labelled("vars", plan.vars), run=run, environ=_environ())
    for key, value in (extra or {}).items():
        ctx[key] = _Labelled(key, value) if isinstance(value, Mapping) else value
    ctx[_SELF] = SelfView(views[name] if name in views else ServiceView(name, own), mine)
    return ctx


def render_value(
    text: str,
    *,
    plan: Plan,
    run: str,
    service: str | ServiceSpec,
    index: int,
    world: Mapping[str, list[Mapping[str, Any]]],
    where: str,
    extra: Extra = None,
) -> str:
    """Render one env value (raw: it goes into the environment, not through a shell)."""
    name = _service_name(service)
    context = _context(plan, run, name, index, world, extra)
    suffix = f" while rendering env of service '{name}'"
    try:
        return _render(str(text), f"<{where}>", False, context, suffix)
    except PlanError as exc:
        raise PlanError(exc.message, where) from None


def _render_field(
    field: str,
    *,
    plan: Plan,
    run: str,
    service: str | ServiceSpec,
    index: int,
    world: Mapping[str, list[Mapping[str, Any]]],
    extra: Extra = None,
) -> dict[str, str]:
    """A mapping field of a service (`env`, `values`) rendered raw, errors at its plan line."""
    spec = plan.services[_service_name(service)]
    return {
        key: render_value(value, plan=plan, run=run, service=spec, index=index, world=world,
                          where=str(spec.pos_of(f"{field}.{key}")), extra=extra)
        for key, value in getattr(spec, field).items()
    }


def render_env(
    *,
    plan: Plan,
    run: str,
    service: str | ServiceSpec,
    index: int,
    world: Mapping[str, list[Mapping[str, Any]]],
    extra: Extra = None,
) -> dict[str, str]:
    """Every env value of the service, rendered for one instance (errors at the plan line)."""
    return _render_field("env", plan=plan, run=run, service=service, index=index,
                         world=world, extra=extra)


def render_values(
    *,
    plan: Plan,
    run: str,
    service: str | ServiceSpec,
    index: int,
    world: Mapping[str, list[Mapping[str, Any]]],
    extra: Extra = None,
) -> dict[str, str]:
    """A service's `values:` for one instance (raw text, like env values)."""
    return _render_field("values", plan=plan, run=run, service=service, index=index,
                         world=world, extra=extra)


def render_args(
    script: ScriptSpec,
    *,
    plan: Plan,
    run: str,
    service: str | ServiceSpec,
    index: int,
    world: Mapping[str, list[Mapping[str, Any]]],
    extra: Extra = None,
) -> list[str]:
    """A step's `args:`, rendered raw: each is one argument (quoted on the command line)."""
    return [
        render_value(arg, plan=plan, run=run, service=service, index=index, world=world,
                     where=str(pos), extra=extra)
        for arg, pos in zip(script.args, script.args_pos, strict=False)
    ]


def render_script(
    script: ScriptSpec,
    *,
    plan: Plan,
    run: str,
    service: str | ServiceSpec,
    index: int,
    world: Mapping[str, list[Mapping[str, Any]]],
    extra: Extra = None,
) -> str:
    """The script text to run on instance `index` of `service` (verbatim unless `.j2`)."""
    if not is_template(script.path):
        return script.source
    name = _service_name(service)
    context = _context(plan, run, name, index, world, extra)
    context["env"] = _Labelled(
        "env",
        render_env(plan=plan, run=run, service=name, index=index, world=world, extra=extra),
    )
    filename = display_path(script.path)
    return _render(
        script.source,
        filename,
        is_shell_script(script.path),
        context,
        f" while rendering service '{name}'",
    )


def render_vars(text: str, plan_vars: Mapping[str, Any], where: str) -> str:
    """Render a plan field that may use only `vars` (e.g. `count`), at load time."""
    try:
        return _render(str(text), f"<{where}>", False, {"vars": _Labelled("vars", plan_vars)}, "")
    except PlanError as exc:
        raise PlanError(exc.message, where) from None


def placeholder_extra() -> dict[str, Any]:
    """Dry-run stand-ins for the extra context names (`home`), never contacted."""
    home = {k: f"<home.{k}>" for k in ("user", "dir", "key", "known_host")}
    return {"home": {**home, "host": "192.0.2.254", "port": 22}}


def _placeholder_addresses():
    while True:
        for net in _TEST_NETS:
            yield from (str(a) for a in net.hosts())


def placeholder_world(plan: Plan) -> dict[str, list[dict[str, Any]]]:
    """A world for dry runs: TEST-NET addresses and `<svc.attr>` exports, nothing launched."""
    addresses = _placeholder_addresses()
    world: dict[str, list[dict[str, Any]]] = {}
    for name, spec in plan.services.items():
        count = spec.count if spec.launches or spec.hosts else 1
        cloud = spec.clouds[0].cloud if spec.clouds else "static"
        instances = []
        for i in range(count):
            address = next(addresses)
            attrs: dict[str, Any] = {
                "address": address,
                "private_address": address,
                "hostname": f"{name}-{i}",
                "instance_id": f"dry-run-{name}-{i}",
                "cloud": cloud,
                "index": i,
                "name": name,
            }
            attrs.update({attr: f"<{name}.{attr}>" for attr in [*spec.exports, *spec.values]})
            instances.append(attrs)
        world[name] = instances
    # A service on an existing host, or on another service's machine, has that address.
    for name, spec in plan.services.items():
        if spec.launches:
            continue
        if spec.hosts:  # `hosts:`: each instance is its listed machine
            for item, host in zip(world[name], spec.hosts, strict=True):
                item.update(address=host.address, private_address=host.address)
            continue
        root, seen = spec, {name}
        while root.host in plan.services and root.host not in seen:
            seen.add(root.host)
            root = plan.services[root.host]
        if root.launches and world[root.name]:
            machine = world[root.name][0]
            keys = ("address", "private_address", "hostname", "instance_id", "cloud")
            world[name][0].update({k: machine[k] for k in keys})
        elif root.host:
            world[name][0].update(address=root.host, private_address=root.host)
    return world

