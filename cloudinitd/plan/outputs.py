"""Plan-level `outputs:` (`url: "http://{{ web.address }}"`): checked, then rendered.

Checked at load like a script's templates (unknown services, attributes a
service does not export, `svc.address` of a service with several instances);
rendered raw in the sandbox with a run's world at the end of `boot` and
`status` and by `output RUN`. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from cloudinitd.errors import PlanError, PlanErrors
from cloudinitd.plan.model import Plan, ServiceSpec
from cloudinitd.refscan import scan_text
from cloudinitd.templates import ServiceView, _environ, _Labelled, _render

_OUTPUTS = "cid_outputs_"  # a stand-in service: no plan service can be named so


def check_outputs(plan: Plan) -> None:
    """Every output template reads only services, attributes and vars that exist.

    Checked as a script's template is (unknown names, attributes a service does
    not export, `svc.address` of a service with several instances), at its line.
    """
    if not plan.outputs:
        return
    first = next(iter(plan.outputs_pos.values()))
    stand_in = ServiceSpec(name=_OUTPUTS, pos=first, clouds=[])
    view = replace(plan, services={**plan.services, _OUTPUTS: stand_in})
    errors: list[PlanError] = []
    for key, text in plan.outputs.items():
        at = plan.outputs_pos.get(key, first)
        scan = scan_text(view, stand_in, text, at.file, at.line, False)
        errors += scan.errors
        if {"self", "home"} & scan.uses:
            errors.append(PlanError(f"outputs: {key}: an output reads services, vars and"
                                    " run (not self or home)", at.file, at.line))
    if errors:
        raise PlanErrors(errors)


def render_outputs(plan: Plan, run: str, world: Mapping[str, list[Mapping[str, Any]]]
                   ) -> tuple[dict[str, str], dict[str, str]]:
    """The plan's `outputs:` rendered raw against a run's world: (values, errors by name).

    An output that cannot render (a service with no live instance) is an error
    for that name only; the others are still shown.
    """
    context: dict[str, Any] = {svc: ServiceView(svc, list(world.get(svc, [])))
                               for svc in plan.services}
    context.update(vars=_Labelled("vars", plan.vars), run=run, environ=_environ())
    values: dict[str, str] = {}
    errors: dict[str, str] = {}
    for key, text in plan.outputs.items():
        where = str(plan.outputs_pos[key]) if key in plan.outputs_pos else f"outputs.{key}"
        try:
            values[key] = _render(str(text), f"<{where}>", False, dict(context), "")
        except PlanError as exc:
            errors[key] = f"{where}: {exc.message}"
    return values, errors
