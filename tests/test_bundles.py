"""cloudinitd/plan/bundles.py: the files a step copies to its machine (pure, in-process; in the mutation test selection)."""

from __future__ import annotations
