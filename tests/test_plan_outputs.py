"""cloudinitd/plan/outputs.py: plan-level outputs checked against the graph (pure, in-process; in the mutation test selection)."""

from __future__ import annotations
