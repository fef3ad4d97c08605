"""cloudinitd/plan/inventory.py: hosts lists and inventory files (pure, in-process; in the mutation test selection)."""

from __future__ import annotations
