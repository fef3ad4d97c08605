"""What a template sees: services, instances and labelled dicts as Jinja values.

Split from templates.py (issue 10) so that rendering and the values it renders
are each one small module. Every view carries `_cid_label`, the name the plan
author wrote (`head.instances[0]`), so that an undefined name or a misuse
(printing a whole service) fails with that name rather than a Python repr.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jinja2 import StrictUndefined
from jinja2.exceptions import TemplateRuntimeError
from jinja2.utils import missing

from cloudinitd.plan.model import BUILTIN_ATTRIBUTES

# Jinja reserves `self` (a TemplateReference for blocks); plans use it for
# "this instance", so templates are compiled with `self` renamed to this.
_SELF = "cid_self_"


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
