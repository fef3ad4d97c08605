"""cloudinitd/plan/samples.py: sample values for a dry run (pure, in-process; in the mutation test selection)."""

from __future__ import annotations
