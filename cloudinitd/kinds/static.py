"""`static`: existing hosts (`host:` / `hosts:`); its cloud entry takes no options."""

from __future__ import annotations

from cloudinitd.kinds.base import Declaration

DECLARATION = Declaration(kind="static", doc="existing hosts", existing_hosts=True)
