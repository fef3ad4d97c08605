"""`cloudinitd image`: build the cached base images of the local providers ahead of time."""

from __future__ import annotations

import time

import click

from cloudinitd.cli import output
from cloudinitd.cli.common import Env, json_option, pass_env


@click.group()
def image() -> None:
    """Base images of the `local` (LXC) and `qemu` providers."""


@image.command()
@click.argument("name", default="debian-12")
@click.option("--provider", "kind", type=click.Choice(["local", "qemu"]), default="local",
              show_default=True)
@json_option
@pass_env
def build(env: Env, name: str, kind: str, as_json: bool) -> None:
    """Build (once) and cache image NAME; later launches clone it copy-on-write."""
    t0 = time.monotonic()
    if kind == "local":
        from cloudinitd.providers.local.image import ensure_image

        where = ensure_image(name, progress=output.info)
    else:
        from cloudinitd.providers.qemu.image import ensure_image, image_cache

        where = ensure_image(image_cache(env.home), name, progress=output.info).disk
    seconds = round(time.monotonic() - t0, 1)
    if as_json:
        output.emit_json({"provider": kind, "image": name, "path": str(where),
                          "seconds": seconds})
    else:
        click.echo(f"{kind} image {name}: {where} ({seconds}s)")


COMMANDS = [image]
