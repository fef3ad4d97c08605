"""`cloudinitd import TOP.conf [-o DIR]` (the on-the-fly conversion for validate/graph/boot
is `cloudinitd.api.plan_file`)."""

from __future__ import annotations

from pathlib import Path

import click

from cloudinitd.cli import output
from cloudinitd.cli.common import Env, json_option, pass_env


@click.command(name="import")
@click.argument("top", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", "out", type=click.Path(file_okay=False),
              help="Directory for the converted plan (default: TOP's name beside it).")
@click.option("-G", "--globals", "globals_files", multiple=True, metavar="FILE",
              type=click.Path(exists=True, dir_okay=False),
              help="A file with a [globals] section, as the original's -G (repeatable).")
@json_option
@pass_env
def import_(env: Env, top: str, out: str | None, globals_files: tuple[str, ...],
            as_json: bool) -> None:
    """Convert an original cloudinit.d launch plan (TOP.conf) into a plan directory."""
    from cloudinitd.catalog import load_catalog
    from cloudinitd.importer import import_plan
    from cloudinitd.plan.loader import load_plan

    top_path = Path(top)
    target = Path(out) if out else top_path.parent / f"{top_path.stem}-cloudinitd"
    path, notes = import_plan(top_path, target, globals_files=[Path(g) for g in globals_files])
    loaded = load_plan(path, catalog=load_catalog(env.home))  # the result must load, too
    if as_json:
        output.emit_json({"plan": str(path), "services": sorted(loaded.services),
                          "notes": [{"where": n.where, "message": n.message} for n in notes]})
        return
    for note in notes:
        output.info(f"not mapped: {note}")
    click.echo(str(path))


COMMANDS = [import_]
