"""qemu provider: full local VMs with their own kernel (see provider.py)."""

from cloudinitd.providers.qemu.provider import QemuProvider

__all__ = ["QemuProvider"]
