"""The `local` provider: LXC system containers on the project's own bridge."""

from cloudinitd.providers.local.provider import LocalProvider, cleanup_orphan_leases

__all__ = ["LocalProvider", "cleanup_orphan_leases"]
