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

import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, NotRequired, TypedDict, Unpack

from jinja2 import Template, TemplateError, TemplateSyntaxError, nodes
from jinja2.exceptions import SecurityError
from jinja2.utils import generate_lorem_ipsum
from markupsafe import Markup

from cloudinitd.errors import PlanError
from cloudinitd.paths import display_path

# The template views and the dry-run world live in their own modules (issue 10:
# module size); the public ones are re-exported here (`X as X`) because callers
# (plan.outputs, plan.samples, engine.context, the CLI, tests) import them from
# cloudinitd.templates.
from cloudinitd.placeholders import placeholder_extra as placeholder_extra
from cloudinitd.placeholders import placeholder_world as placeholder_world
from cloudinitd.plan.model import Plan, ScriptSpec, ServiceSpec
from cloudinitd.sandbox import BoundedSandbox, bound_tree, render_bounded
from cloudinitd.secretcheck import secret_key_name
from cloudinitd.templateviews import _SELF, SelfView, _Labelled, _Undefined
from cloudinitd.templateviews import InstanceView as InstanceView
from cloudinitd.templateviews import ServiceView as ServiceView

# Names every template may use besides the services. `home` is the run's
# home share (host, port, user, dir, key, known_host: see homeshare.py),
# given by the engine through `extra` to the runs that use it.
# `environ` is this machine's environment (`env` was taken: the service's env values).
CONTEXT_NAMES = frozenset({"vars", "run", "self", "env", "home", "environ"})
Extra = Mapping[str, Any] | None
# Each service's instances' attributes (`address`, exports, ...): what templates read.
World = Mapping[str, list[Mapping[str, Any]]]
TEMPLATE_SUFFIX = ".j2"
_SHELL_SUFFIXES = frozenset({"", ".sh", ".bash"})


def is_template(path: Path | str) -> bool:
    return str(path).endswith(TEMPLATE_SUFFIX)


def is_shell_script(path: Path | str) -> bool:
    """A `.sh` template (or one with no suffix): its values get shell-quoted."""
    name = Path(path).name
    if name.endswith(TEMPLATE_SUFFIX):
        name = name[: -len(TEMPLATE_SUFFIX)]
    return Path(name).suffix in _SHELL_SUFFIXES


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


# Jinja reserves `self`; plans use it for "this instance", so it is compiled as
# _SELF (templateviews.py), the name the context gives SelfView.
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
    world: World,
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


class For(TypedDict):
    """The instance a template is rendered for: the keyword arguments of every render_*."""

    plan: Plan
    run: str
    service: str | ServiceSpec
    index: int
    world: World
    extra: NotRequired[Extra]


@dataclass(frozen=True)
class _For:
    """`For`, checked: a missing or unknown keyword is a TypeError, as in a signature."""

    plan: Plan
    run: str
    service: str | ServiceSpec
    index: int
    world: World
    extra: Extra = None

    @property
    def name(self) -> str:
        return _service_name(self.service)

    def context(self) -> dict[str, Any]:
        return _context(self.plan, self.run, self.name, self.index, self.world, self.extra)


def _render_value(text: str, where: str, at: _For, what: str = "env") -> str:
    suffix = f" while rendering {what} of service '{at.name}'"
    try:
        return _render(str(text), f"<{where}>", False, at.context(), suffix)
    except PlanError as exc:
        raise PlanError(exc.message, where) from None


def render_value(text: str, *, where: str, **at: Unpack[For]) -> str:
    """Render one env value (raw: it goes into the environment, not through a shell)."""
    return _render_value(text, where, _For(**at))


def _render_field(field: str, at: _For) -> dict[str, str]:
    """A mapping field of a service (`env`, `values`) rendered raw, errors at its plan line."""
    spec = at.plan.services[at.name]
    return {
        key: _render_value(value, str(spec.pos_of(f"{field}.{key}")), at, field)
        for key, value in getattr(spec, field).items()
    }


def render_env(**at: Unpack[For]) -> dict[str, str]:
    """Every env value of the service, rendered for one instance (errors at the plan line)."""
    return _render_field("env", _For(**at))


def render_values(**at: Unpack[For]) -> dict[str, str]:
    """A service's `values:` for one instance (raw text, like env values)."""
    return _render_field("values", _For(**at))


def render_args(script: ScriptSpec, **at: Unpack[For]) -> list[str]:
    """A step's `args:`, rendered raw: each is one argument (quoted on the command line)."""
    # An arg without a position of its own (a ScriptSpec built by hand) is reported at
    # the step's line; zip alone would drop it without a word.
    positions = [*script.args_pos, *[script.pos] * (len(script.args) - len(script.args_pos))]
    target = _For(**at)
    return [_render_value(arg, str(pos), target, "args")
            for arg, pos in zip(script.args, positions, strict=True)]


def render_script(script: ScriptSpec, **at: Unpack[For]) -> str:
    """The script text to run on instance `index` of `service` (verbatim unless `.j2`)."""
    target = _For(**at)
    if not is_template(script.path):
        return script.source
    context = target.context()
    context["env"] = _Labelled("env", _render_field("env", target))
    filename = display_path(script.path)
    return _render(
        script.source,
        filename,
        is_shell_script(script.path),
        context,
        f" while rendering service '{target.name}'",
    )


def render_vars(text: str, plan_vars: Mapping[str, Any], where: str) -> str:
    """Render a plan field that may use only `vars` (e.g. `count`), at load time."""
    try:
        return _render(str(text), f"<{where}>", False, {"vars": _Labelled("vars", plan_vars)}, "")
    except PlanError as exc:
        raise PlanError(exc.message, where) from None
