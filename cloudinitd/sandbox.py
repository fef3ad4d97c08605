"""The bounded Jinja2 sandbox every plan template renders in.

Jinja's `ImmutableSandboxedEnvironment` stops templates from reaching
Python internals (`cycler.__init__.__globals__.os`), calling unsafe methods
or mutating lists and dicts. It does not stop a template from spending all
the CPU or memory of this machine, so each render here also has a budget:

- steps: every attribute or item lookup, call, filter, loop iteration and
  checked operator costs one; more than `MAX_STEPS` stops the render;
- time: a render running longer than `MAX_SECONDS` stops (checked per step);
- size: no string, list or output may exceed `MAX_OUTPUT` characters, and
  the values a render builds may not add up to more than `MAX_BUILT`.
  Operations that could allocate a lot in one go (`'x' * n`, `** n`,
  `center(n)`, `'%9999999d'`, `replace`, `join`) are checked before they run.

Exceeding any of them raises `BudgetExceeded` (a `SecurityError`), which the
renderer reports as a plan error at the template line.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from jinja2 import nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_STEPS = 250_000
MAX_SECONDS = 2.0
SESSION_SECONDS = 8.0  # all renders of one `boot --dry-run` / `validate`
MAX_OUTPUT = 4 * 1024 * 1024  # characters of one value or one rendered template
MAX_BUILT = 64 * 1024 * 1024  # characters of all values one render builds
_CHECK_TIME_EVERY = 1024
# Numbers a template may pass as a width or repeat count to string methods and filters.
_WIDE = re.compile(r"\d{7,}")
_NESTED_FIELD = re.compile(r"\{[^{}]*\{")
_PRINTF = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?")
_MAX_POW_BITS = 100_000


class BudgetExceeded(SecurityError):
    """A template used more steps, time or memory than a render may."""


class _Budget(threading.local):
    """Per-thread budget of the render in progress (renders run in worker threads too)."""

    def __init__(self) -> None:
        self.active = False
        self.steps = 0
        self.built = 0
        self.deadline = 0.0
        self.session_deadline: float | None = None


_BUDGET = _Budget()


@contextmanager
def render_session(seconds: float) -> Iterator[None]:
    """All renders of this thread inside the block share one time limit as well.

    Used by commands that render a whole plan at once (`boot --dry-run`), so
    many templates each just under the per-render limit cannot add up to hours.
    """
    _BUDGET.session_deadline = time.monotonic() + seconds
    try:
        yield
    finally:
        _BUDGET.session_deadline = None


def start_budget() -> None:
    _BUDGET.active = True
    _BUDGET.steps = 0
    _BUDGET.built = 0
    _BUDGET.deadline = time.monotonic() + MAX_SECONDS
    if _BUDGET.session_deadline is not None:
        _BUDGET.deadline = min(_BUDGET.deadline, _BUDGET.session_deadline)
        if time.monotonic() > _BUDGET.deadline:
            raise BudgetExceeded(f"templates too slow: the plan's renders took more than"
                                 f" {SESSION_SECONDS:g}s in all")


def stop_budget() -> None:
    _BUDGET.active = False


def step(n: int = 1) -> None:
    b = _BUDGET
    if not b.active:
        return
    b.steps += n
    if b.steps > MAX_STEPS:
        raise BudgetExceeded(f"template too expensive: more than {MAX_STEPS} steps")
    if b.steps % _CHECK_TIME_EVERY < n and time.monotonic() > b.deadline:
        raise BudgetExceeded(f"template too slow: more than {MAX_SECONDS:g}s to render")


def _size(value: Any) -> int:
    if isinstance(value, str | bytes | list | tuple | dict | set):
        return len(value)
    return 0


def built(value: Any) -> Any:
    """Account for a value a template produced; refuse one that is too large."""
    size = _size(value)
    if size > MAX_OUTPUT:
        raise BudgetExceeded(f"template value too large: more than {MAX_OUTPUT} characters")
    b = _BUDGET
    if b.active and size:
        b.built += size
        if b.built > MAX_BUILT:
            raise BudgetExceeded(f"template builds too much: more than {MAX_BUILT} characters")
    return value


def _refuse_size(estimate: int) -> None:
    if estimate > MAX_OUTPUT:
        raise BudgetExceeded(f"template value too large: more than {MAX_OUTPUT} characters")


def _ints(values: Iterable[Any]) -> Iterator[int]:
    for v in values:
        if isinstance(v, int) and not isinstance(v, bool):
            yield v


def check_printf(fmt: str, args: Any) -> None:
    """`'%9999999d' % x` or `'%*d' % (10**9, x)` would allocate the width."""
    values = args if isinstance(args, tuple | list) else (
        list(args.values()) if isinstance(args, dict) else [args]
    )
    for match in _PRINTF.finditer(fmt):
        for part in match.groups():
            if part == "*":
                for n in _ints(values):
                    _refuse_size(abs(n))
            elif part:
                _refuse_size(int(part) if len(part) < 12 else MAX_OUTPUT + 1)


def check_format(fmt: str, args: Iterable[Any]) -> None:
    """`'{:9999999}'.format(x)` and nested widths `'{:{w}}'` allocate the width."""
    if _WIDE.search(fmt):
        raise BudgetExceeded("template format width too large")
    if _NESTED_FIELD.search(fmt):
        for n in _ints(args):
            _refuse_size(abs(n))


def _precheck_method(obj: Any, name: str, args: tuple, kwargs: dict) -> None:
    values = [*args, *kwargs.values()]
    if isinstance(obj, str | bytes):
        if name == "replace" and len(args) >= 2:
            old, new = args[0], args[1]
            hits = obj.count(old) if old else len(obj) + 1
            _refuse_size(len(obj) + hits * _size(new))
        elif name == "join" and args:
            _check_join(obj, args[0])
        elif name == "expandtabs":
            for n in _ints(values):
                _refuse_size(len(obj) + obj.count("\t" if isinstance(obj, str) else b"\t") * n)
        else:
            for n in _ints(values):  # center, ljust, rjust, zfill: the width is the size
                _refuse_size(abs(n))


def _check_join(sep: Any, items: Any) -> None:
    if isinstance(items, list | tuple):
        total = sum(len(str(i)) for i in items) + len(str(sep)) * max(len(items) - 1, 0)
        _refuse_size(total)


def _check_binop(op: str, left: Any, right: Any) -> None:
    if op == "*":
        for seq, n in ((left, right), (right, left)):
            if _size(seq) and isinstance(n, int):
                _refuse_size(_size(seq) * max(n, 0))
    elif op == "**":
        ints = isinstance(left, int) and isinstance(right, int) and right > 0
        if ints and abs(left) > 1 and abs(left).bit_length() * right > _MAX_POW_BITS:
            raise BudgetExceeded("template number too large")
    elif op == "+":
        _refuse_size(_size(left) + _size(right))
    elif op == "%" and isinstance(left, str):
        check_printf(left, right)


def _precheck_filter(name: str, value: Any, args: tuple, kwargs: dict) -> None:
    values = [*args, *kwargs.values()]
    if name == "format" and isinstance(value, str):
        check_printf(value, kwargs or args)
    elif name == "replace" and isinstance(value, str):
        _precheck_method(value, "replace", args, {})
    elif name == "join":
        _check_join(args[0] if args else "", value if isinstance(value, list | tuple) else [])
    elif name in ("center", "indent"):
        lines = str(value).count("\n") + 1 if name == "indent" else 1
        for n in _ints(values):
            _refuse_size(len(str(value)) + lines * abs(n))
    elif name == "batch":
        for n in _ints(values):
            _refuse_size(abs(n))


def _bounded_filter(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    # Filters are plain calls in compiled templates (not through `call`): wrap each one.
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        step()
        value_at = 1 if getattr(fn, "jinja_pass_arg", None) else 0
        if len(args) > value_at:
            _precheck_filter(name, args[value_at], args[value_at + 1:], kwargs)
        return built(fn(*args, **kwargs))

    if hasattr(fn, "jinja_pass_arg"):  # pass_context / pass_environment filters
        wrapper.jinja_pass_arg = fn.jinja_pass_arg  # type: ignore[attr-defined]
    wrapper.__name__ = getattr(fn, "__name__", name)
    return wrapper


def _each(iterable: Any) -> Iterator[Any]:
    """`{% for %}` iterates through this: one step per item."""
    for item in iterable:
        step()
        yield item


def _concat(parts: list[Any]) -> str:
    """`a ~ b`: the size is checked before joining."""
    step()
    texts = [str(p) for p in parts]
    _refuse_size(sum(len(t) for t in texts))
    return built("".join(texts))


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """ImmutableSandboxedEnvironment plus the step, time and size budget above."""

    intercepted_binops = frozenset({"*", "**", "+", "%", "//"})

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.filters = {n: _bounded_filter(n, f) for n, f in self.filters.items()}
        self.filters["cid_each"] = _each
        self.filters["cid_concat"] = _concat

    def add_filter(self, name: str, fn: Callable[..., Any]) -> None:
        self.filters[name] = _bounded_filter(name, fn)

    def getattr(self, obj: Any, attribute: str) -> Any:
        step()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        step()
        return super().getitem(obj, argument)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        step()
        owner = getattr(__obj, "__self__", None)
        name = getattr(__obj, "__name__", "")
        if owner is not None:
            _precheck_method(owner, name, args, kwargs)
        return built(super().call(__context, __obj, *args, **kwargs))

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        step()
        _check_binop(operator, left, right)
        return built(super().call_binop(context, operator, left, right))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt = value.__self__

        def checked(*args: Any, **kwargs: Any) -> str:
            step()
            values = [*args, *kwargs.values()]
            if args and isinstance(args[0], dict) and value.__name__ == "format_map":
                values = list(args[0].values())
            check_format(str(fmt), values)
            return built(wrapped(*args, **kwargs))

        return checked


def bound_tree(tree: nodes.Template) -> None:
    """Route loops and `~` through the budget (they are not calls the sandbox sees)."""
    for loop in tree.find_all(nodes.For):
        loop.iter = nodes.Filter(loop.iter, "cid_each", [], [], None, None, lineno=loop.lineno)
    for concat in list(tree.find_all(nodes.Concat)):
        parts = nodes.List(list(concat.nodes), lineno=concat.lineno)
        replacement = nodes.Filter(parts, "cid_concat", [], [], None, None, lineno=concat.lineno)
        # A Concat cannot be swapped in place without its parent: make it a one-item Concat
        # whose item is the checked join (same value, same type).
        concat.nodes = [replacement]


def render_bounded(template: Any, context: dict[str, Any]) -> str:
    """Render `template` within the budget; the output is size-checked as it streams."""
    start_budget()
    try:
        out: list[str] = []
        size = 0
        for chunk in template.generate(context):
            size += len(chunk)
            if size > MAX_OUTPUT:
                raise BudgetExceeded(f"template output too large: more than {MAX_OUTPUT}"
                                     " characters")
            out.append(chunk)
        return "".join(out)
    finally:
        stop_budget()
