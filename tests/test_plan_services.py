"""cloudinitd/plan/services.py: one service entry normalised into a ServiceSpec (pure, in-process; in the mutation test selection)."""

from __future__ import annotations
