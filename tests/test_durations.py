"""cloudinitd/plan/durations.py: durations in plans (pure, in-process; in the mutation test selection)."""

from __future__ import annotations
