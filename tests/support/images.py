"""What the local and qemu image tests share: a one-service plan and its address."""

from __future__ import annotations

from pathlib import Path

from tests.support.cli import Cli, write_plan


def web_plan(folder: Path, name: str, cloud: str, image: str | None = None) -> Path:
    """A plan with one service `web` on `cloud`, booted from `image` when given."""
    image_line = f"\n            image: {image}" if image else ""
    return write_plan(folder, f"""
        name: {name}
        services:
          web:
            cloud: {cloud}{image_line}
    """)


def web_address(cli: Cli, run: str) -> str:
    return cli("status", run, "--json").json()["services"]["web"]["instances"][0]["address"]
