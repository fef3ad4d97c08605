"""cloudinitd/plan/fields.py: small field readers of the loader (pure, in-process; in the mutation test selection)."""

from __future__ import annotations
