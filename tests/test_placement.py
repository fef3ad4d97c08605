"""cloudinitd/plan/placement.py: where a service's instances come from (pure, in-process; in the mutation test selection)."""

from __future__ import annotations
