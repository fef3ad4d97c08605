"""cloudinitd/plan/picture.py: the plan as a Graphviz picture (pure, in-process; in the mutation test selection)."""

from __future__ import annotations
