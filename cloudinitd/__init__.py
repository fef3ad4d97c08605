"""cloudinitd: launch-plan orchestrator (a revival of Nimbus cloudinit.d)."""

__version__ = "0.1.0"
