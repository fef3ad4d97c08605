"""`autoscale:` of a service, checked beyond its shape (which plan/schema.py checks).

The meaning: bounds that hold together, one way of deciding (thresholds or a
target), a sensor script that exists, a count inside the bounds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cloudinitd.plan.durations import parse_duration
from cloudinitd.plan.model import AutoscaleSpec, Pos, ScriptSpec, ServiceSpec
from cloudinitd.plan.yamlpos import PosDict, PosList

Error = Callable[[str, int], None]
Script = Callable[[str, str, str, int], "ScriptSpec | None"]
DEFAULT_COOLDOWN = 60.0


def parse_autoscale(name: str, spec: ServiceSpec, value: PosDict, line: int,
                    per_service: int, error: Error, script: Script) -> AutoscaleSpec | None:
    """The service's AutoscaleSpec, or None after reporting each problem through `error`."""
    def at(key: str) -> int:
        return value.key_line(key) if isinstance(value, PosDict) and key in value else line

    low, high = int(value["min"]), int(value["max"])
    ok = True
    if low > high:
        error(f"service {name!r}: autoscale min {low} is above max {high}", at("min"))
        ok = False
    if high > per_service:
        error(f"service {name!r}: autoscale max {high} is above the limit of {per_service}"
              " instances per service (see --max-instances)", at("max"))
        ok = False
    if ok and not low <= spec.count <= high:
        error(f"service {name!r}: count {spec.count} is outside autoscale min {low} .. max"
              f" {high}", at("min"))
        ok = False
    thresholds: dict[str, Any] = dict(value.get("thresholds") or {})
    target = value.get("target")
    if ("thresholds" in value) == (target is not None):
        error(f"service {name!r}: autoscale needs either `thresholds` (above/below) or a"
              " `target`, not both or neither", line)
        ok = False
    above, below = thresholds.get("above"), thresholds.get("below")
    if "thresholds" in value and above is None and below is None:
        error(f"service {name!r}: autoscale thresholds need `above`, `below` or both",
              at("thresholds"))
        ok = False
    if above is not None and below is not None and below >= above:
        error(f"service {name!r}: autoscale thresholds: below ({below}) must be less than"
              f" above ({above})", at("thresholds"))
        ok = False
    cooldown = DEFAULT_COOLDOWN
    if "cooldown" in value:
        try:
            cooldown = parse_duration(value["cooldown"])
        except ValueError as exc:
            error(f"service {name!r}: autoscale cooldown: {exc}", at("cooldown"))
            ok = False
    given = value["sensor"]
    ref = given["script"] if isinstance(given, dict) else given
    sensor_line = given.key_line("script") if isinstance(given, PosDict) else at("sensor")
    sensor = script(name, "sensor", ref, sensor_line)
    if sensor is None or not ok:
        return None
    if isinstance(given, dict):
        args = given.get("args") or []
        for i, arg in enumerate(args):
            sensor.args.append(str(arg).lower() if isinstance(arg, bool) else str(arg))
            # Each argument's own line, so a template error in it is reported there.
            at_line = (args.item_line(i) if isinstance(args, PosList)
                       else given.key_line("args") if isinstance(given, PosDict) else sensor_line)
            sensor.args_pos.append(Pos(sensor.pos.file if sensor.pos else "", at_line))
    return AutoscaleSpec(min=low, max=high, sensor=sensor, local=value.get("local") is True,
                         above=None if above is None else float(above),
                         below=None if below is None else float(below),
                         step=int(thresholds.get("step", 1)),
                         target=None if target is None else float(target), cooldown=cooldown)
