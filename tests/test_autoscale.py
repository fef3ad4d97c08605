"""cloudinitd/plan/autoscale.py: a service's autoscale block (pure, in-process; in the mutation
test selection).

`parse_autoscale` is called as the loader calls it, with a YAML block read with
its lines, an error sink and a script resolver standing in for the plan folder.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cloudinitd.plan.autoscale import DEFAULT_COOLDOWN, parse_autoscale
from cloudinitd.plan.model import AutoscaleSpec, Pos, ScriptSpec, ServiceSpec
from cloudinitd.plan.yamlpos import load_yaml


def _parse(block: str, count: int = 2, per_service: int = 50, line: int = 1,
           scripts: tuple[str, ...] = ("load.sh",)):
    """(spec or None, errors as `LINE: message`, script calls) for `autoscale:` text."""
    value = load_yaml(block, "p.yml")
    service = ServiceSpec(name="w", pos=Pos("p.yml", 1), clouds=[])
    service.count = count
    errors: list[str] = []
    calls: list[tuple[str, str, str, int]] = []

    def script(name: str, step: str, ref: str, at: int) -> ScriptSpec | None:
        calls.append((name, step, ref, at))
        if ref not in scripts:
            errors.append(f"{at}: script {ref!r} not found")
            return None
        return ScriptSpec(ref, Path("/plans") / ref, "echo 1\n", Pos("p.yml", at))

    spec = parse_autoscale("w", service, value, line, per_service,
                           lambda message, at: errors.append(f"{at}: {message}"), script)
    return spec, errors, calls


def test_a_target_block_gives_its_spec():
    spec, errors, calls = _parse("min: 1\nmax: 4\nsensor: load.sh\ntarget: 70\n")
    assert errors == []
    assert calls == [("w", "sensor", "load.sh", 3)]
    assert spec == AutoscaleSpec(min=1, max=4, sensor=spec.sensor, local=False, above=None,
                                 below=None, step=1, target=70.0, cooldown=DEFAULT_COOLDOWN)
    assert isinstance(spec.target, float) and spec.cooldown == 60.0
    assert spec.sensor.ref == "load.sh" and spec.sensor.args == []


def test_thresholds_step_cooldown_local_and_sensor_args():
    spec, errors, calls = _parse(
        "min: 2\nmax: 5\nlocal: true\ncooldown: 2m\n"
        "thresholds: {above: 80, below: 20.5, step: 2}\n"
        "sensor:\n  script: load.sh\n  args: [cpu, true, 3]\n")
    assert errors == []
    assert calls == [("w", "sensor", "load.sh", 7)]
    assert (spec.min, spec.max, spec.local, spec.cooldown) == (2, 5, True, 120.0)
    assert (spec.above, spec.below, spec.step, spec.target) == (80.0, 20.5, 2, None)
    assert isinstance(spec.above, float) and isinstance(spec.below, float)
    assert spec.sensor.args == ["cpu", "true", "3"]


@pytest.mark.parametrize(("thresholds", "above", "below"), [
    ("{above: 80}", 80.0, None),
    ("{below: 10}", None, 10.0),
])
def test_one_threshold_is_enough(thresholds, above, below):
    spec, errors, _ = _parse(f"min: 1\nmax: 3\nsensor: load.sh\nthresholds: {thresholds}\n")
    assert errors == []
    assert (spec.above, spec.below, spec.step, spec.local) == (above, below, 1, False)


def test_local_other_than_true_is_not_local():
    spec, _, _ = _parse("min: 1\nmax: 3\nsensor: load.sh\ntarget: 5\nlocal: 'yes'\n")
    assert spec.local is False


@pytest.mark.parametrize(("block", "count", "expected"), [
    ("min: 3\nmax: 2\nsensor: load.sh\ntarget: 1\n", 2,
     ["1: service 'w': autoscale min 3 is above max 2"]),
    ("min: 1\nmax: 60\nsensor: load.sh\ntarget: 1\n", 2,
     ["2: service 'w': autoscale max 60 is above the limit of 50 instances per service"
      " (see --max-instances)"]),
    ("min: 2\nmax: 4\nsensor: load.sh\ntarget: 1\n", 1,
     ["1: service 'w': count 1 is outside autoscale min 2 .. max 4"]),
    ("min: 2\nmax: 4\nsensor: load.sh\ntarget: 1\n", 5,
     ["1: service 'w': count 5 is outside autoscale min 2 .. max 4"]),
    ("min: 1\nmax: 4\nsensor: load.sh\n", 2,
     ["9: service 'w': autoscale needs either `thresholds` (above/below) or a `target`,"
      " not both or neither"]),
    ("min: 1\nmax: 4\nsensor: load.sh\ntarget: 3\nthresholds: {above: 5}\n", 2,
     ["9: service 'w': autoscale needs either `thresholds` (above/below) or a `target`,"
      " not both or neither"]),
    ("min: 1\nmax: 4\nsensor: load.sh\nthresholds: {step: 2}\n", 2,
     ["4: service 'w': autoscale thresholds need `above`, `below` or both"]),
    ("min: 1\nmax: 4\nsensor: load.sh\nthresholds: {above: 5, below: 5}\n", 2,
     ["4: service 'w': autoscale thresholds: below (5) must be less than above (5)"]),
    ("min: 1\nmax: 4\nsensor: load.sh\nthresholds: {above: 5, below: 9}\n", 2,
     ["4: service 'w': autoscale thresholds: below (9) must be less than above (5)"]),
    ("min: 1\nmax: 4\nsensor: load.sh\ntarget: 3\ncooldown: soon\n", 2,
     ["5: service 'w': autoscale cooldown: not a duration: 'soon'"
      " (use seconds, or e.g. 30s, 20m, 2h, 1h30m)"]),
    ("min: 1\nmax: 4\nsensor: gone.sh\ntarget: 3\n", 2,
     ["3: script 'gone.sh' not found"]),
    ("min: 1\nmax: 4\nsensor: {script: gone.sh}\ntarget: 3\n", 2,
     ["3: script 'gone.sh' not found"]),
])
def test_each_problem_is_reported_at_its_line_and_nothing_is_built(block, count, expected):
    spec, errors, _ = _parse(block, count=count, line=9)
    assert spec is None
    assert errors == expected


def test_bounds_at_the_limits_are_accepted():
    spec, errors, _ = _parse("min: 2\nmax: 50\nsensor: load.sh\ntarget: 1\n", count=2)
    assert errors == [] and (spec.min, spec.max) == (2, 50)
    spec, errors, _ = _parse("min: 3\nmax: 3\nsensor: load.sh\ntarget: 1\n", count=3)
    assert errors == [] and (spec.min, spec.max) == (3, 3)
    spec, errors, _ = _parse("min: 1\nmax: 3\nsensor: load.sh\nthresholds: {above: 5, below: 4}\n")
    assert errors == [] and (spec.above, spec.below) == (5.0, 4.0)


def test_a_count_outside_bad_bounds_is_not_reported_twice():
    # Bounds that do not hold together say so once; the count is not also checked.
    _, errors, _ = _parse("min: 4\nmax: 2\nsensor: load.sh\ntarget: 1\n", count=9)
    assert errors == ["1: service 'w': autoscale min 4 is above max 2"]
    _, errors, _ = _parse("min: 1\nmax: 60\nsensor: load.sh\ntarget: 1\n", count=70)
    assert len(errors) == 1 and "above the limit of 50" in errors[0]


def test_every_problem_of_one_block_is_reported():
    _, errors, calls = _parse("min: 80\nmax: 70\nsensor: gone.sh\nthresholds: {}\ncooldown: x\n",
                              line=9)
    assert errors == [
        "1: service 'w': autoscale min 80 is above max 70",
        "2: service 'w': autoscale max 70 is above the limit of 50 instances per service"
        " (see --max-instances)",
        "4: service 'w': autoscale thresholds need `above`, `below` or both",
        "5: service 'w': autoscale cooldown: not a duration: 'x'"
        " (use seconds, or e.g. 30s, 20m, 2h, 1h30m)",
        "3: script 'gone.sh' not found",
    ]
    assert calls == [("w", "sensor", "gone.sh", 3)]


def test_a_block_without_lines_reports_at_the_service_line():
    from cloudinitd.plan.yamlpos import PosDict
    value = {"min": 3, "max": 1, "sensor": "load.sh", "target": 1}
    errors: list[str] = []
    service = ServiceSpec(name="w", pos=Pos("p.yml", 1), clouds=[])
    parse_autoscale("w", service, value, 7, 50, lambda m, at: errors.append(f"{at}: {m}"),
                    lambda *a: None)
    assert errors == ["7: service 'w': autoscale min 3 is above max 1"]
    assert not isinstance(value, PosDict)


def test_a_sensor_mapping_is_located_at_its_script_key():
    # `script:` is not the mapping's first key here: its own line is the one reported.
    spec, errors, calls = _parse("min: 1\nmax: 3\ntarget: 5\nsensor:\n  args: [CPU, false]\n"
                                 "  script: load.sh\n")
    assert errors == [] and calls == [("w", "sensor", "load.sh", 6)]
    assert spec.sensor.args == ["CPU", "false"]
