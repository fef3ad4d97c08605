"""The plan: a YAML launch plan loaded, validated and resolved (pure, no I/O but reading files)."""

from cloudinitd.plan.model import (
    BUILTIN_ATTRIBUTES,
    CloudPlacement,
    CloudSpec,
    Plan,
    Pos,
    ScriptSpec,
    ServiceSpec,
)

__all__ = [
    "BUILTIN_ATTRIBUTES",
    "CloudPlacement",
    "CloudSpec",
    "Plan",
    "Pos",
    "ScriptSpec",
    "ServiceSpec",
]
