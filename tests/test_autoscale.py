"""cloudinitd/plan/autoscale.py: a service's autoscale block (pure, in-process; in the mutation test selection)."""

from __future__ import annotations
