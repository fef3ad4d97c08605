"""`cloudinitd image`: build the cached base images of the local providers ahead of time."""

from __future__ import annotations

import time
from pathlib import Path

import click

from cloudinitd import kinds
from cloudinitd.cli import output
from cloudinitd.cli.common import RUN, Env, json_option, pass_env


@click.group()
def image() -> None:
    """Images: list, save, stage, delete and test them on ec2, local and qemu clouds."""


@image.command()
@click.argument("name", default="debian-12")
@click.option("--provider", "kind", type=click.Choice(kinds.image_builders(kinds.declared())),
              default=kinds.default_cloud(kinds.BUILTIN), show_default=True)
@json_option
@pass_env
def build(env: Env, name: str, kind: str, as_json: bool) -> None:
    """Build (once) and cache image NAME; later launches clone it copy-on-write."""
    from cloudinitd.plan.model import CloudSpec
    from cloudinitd.providers import get_provider

    t0 = time.monotonic()
    where = get_provider(CloudSpec(kind, kind), env.home).build_image(name, output.info)
    seconds = round(time.monotonic() - t0, 1)
    if as_json:
        output.emit_json({"provider": kind, "image": name, "path": str(where),
                          "seconds": seconds})
    else:
        click.echo(f"{kind} image {name}: {where} ({seconds}s)")


COMMANDS = [image]


# -- images on any cloud whose provider has image hooks (providers/base.py) -------------------


def _clouds(env: Env):
    """The catalog's clouds and the built-in `local` and `qemu` (as a plan sees them)."""
    from cloudinitd.catalog import load_catalog
    from cloudinitd.plan.loader import BUILTIN_CLOUDS
    from cloudinitd.plan.model import CloudSpec

    return {**{n: CloudSpec(n, kind) for n, kind in BUILTIN_CLOUDS.items()},
            **load_catalog(env.home)}


def _catalog_cloud(env: Env, name: str):
    from cloudinitd.errors import UsageError

    clouds = _clouds(env)
    if name not in clouds:
        known = ", ".join(sorted(clouds))
        raise UsageError(f"no cloud {name!r} in the catalog (known: {known})")
    return clouds[name]


def _provider(env: Env, spec):
    """The cloud's provider: its image hooks do the work (providers/base.py)."""
    from cloudinitd.providers import get_provider

    return get_provider(spec, env.home)


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


class _Bar:
    """A byte progress bar on stderr (rich) on a terminal; a line per quarter otherwise."""

    def __init__(self, total: int, label: str):
        import sys

        self.total, self.done, self.label, self.shown = total, 0, label, 0
        self.rich = None
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self.rich = Progress("{task.description}", BarColumn(), DownloadColumn(),
                                 TransferSpeedColumn(), TimeRemainingColumn(),
                                 console=Console(stderr=True))
            self.task = self.rich.add_task(label, total=total)

    def __enter__(self) -> _Bar:
        if self.rich:
            self.rich.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.rich:
            self.rich.stop()

    def __call__(self, sent: int) -> None:
        self.done += sent
        if self.rich:
            self.rich.update(self.task, completed=self.done)
            return
        quarter = self.done * 4 // max(self.total, 1)
        if quarter > self.shown:
            self.shown = quarter
            percent = self.done * 100 // max(self.total, 1)
            output.info(f"{self.label}: {percent}% of {_size(self.total)}")


@image.command(name="list")
@click.option("--cloud", "cloud_name", help="A cloud (default: every cloud of the catalog, "
              "local and qemu).")
@json_option
@pass_env
def list_images(env: Env, cloud_name: str | None, as_json: bool) -> None:
    """The images a cloud offers (ec2: yours; local/qemu: the image cache), with size and date."""
    from cloudinitd.errors import CloudinitdError

    specs = [_catalog_cloud(env, cloud_name)] if cloud_name else list(_clouds(env).values())
    rows, problems = [], []
    for spec in specs:
        try:
            found = _provider(env, spec).list_images()
        except CloudinitdError as exc:
            if cloud_name:
                raise
            problems.append(f"{spec.name}: {exc}")  # one cloud out of reach: list the others
            continue
        rows.extend({"cloud": spec.name, **row} for row in found)
    for problem in problems:
        output.info(f"not listed: {problem}")
    if as_json:
        output.emit_json({"images": rows, "not_listed": problems})
        return
    if not rows:
        click.echo("no images" + (f" on {cloud_name}" if cloud_name else ""))
        return
    click.echo(f"{'CLOUD':<12} {'NAME':<28} {'ID':<22} {'STATE':<10} {'SIZE':>10}  CREATED")
    for r in rows:
        click.echo(f"{r['cloud']:<12} {r['name'] or '-':<28} {r['image_id']:<22} "
                   f"{r['state'] or '-':<10} "
                   f"{_size(r['size']):>10}  {r['created'] or '-'}")


@image.command()
@click.argument("run", type=RUN)
@click.argument("target", metavar="SERVICE[/INDEX]")
@click.argument("name")
@click.option("--stop", is_flag=True, help="Terminate the instance once the image is saved "
              "(local/qemu: shut it down for the copy instead of freezing/pausing it).")
@click.option("--timeout", type=float, default=1800, show_default=True,
              help="Seconds to wait for the image to become available (ec2).")
@json_option
@pass_env
def save(env: Env, run: str, target: str, name: str, stop: bool, timeout: float,
         as_json: bool) -> None:
    """Save a booted instance of RUN as image NAME, bootable as `image: NAME` on its cloud."""
    from cloudinitd.images.save import save_instance

    saved = save_instance(env.home, env.store, run, target, name, stop=stop, timeout=timeout,
                          say=output.info)
    if as_json:
        output.emit_json(saved.as_dict())
    else:
        click.echo(f"saved {saved.instance} as {name} ({saved.image_id}) on {saved.cloud}; "
                   f"boot it with `image: {name}`"
                   + (" (instance terminated)" if saved.stopped else ""))


@image.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--cloud", "cloud_name", required=True, help="A cloud (catalog, local or qemu).")
@click.option("--name", help="Image name (default: the file name).")
@json_option
@pass_env
def stage(env: Env, file: Path, cloud_name: str, name: str | None, as_json: bool) -> None:
    """Stage a disk FILE as an image (ec2: resumable upload + register; local: a rootfs
    tarball, qemu: a raw/qcow2 disk, into the image cache)."""
    from cloudinitd.errors import UsageError

    if not file.is_file():
        raise UsageError(f"{file}: no such image file")
    provider = _provider(env, _catalog_cloud(env, cloud_name))
    name = provider.check_image_name(name or file.name)
    with _Bar(file.stat().st_size, f"stage {name}") as bar:
        result = provider.import_image(file, name, bar, say=output.info)
    if as_json:
        output.emit_json(result)
    else:
        resumed = (f" (resumed: sent parts {result['uploaded_parts']} of {result['parts']})"
                   if result.get("resumed") else "")
        where = result.get("url") or result.get("path")
        click.echo(f"staged {file} as {name} ({result['image_id']}) at {where}{resumed}")


@image.command()
@click.argument("name")
@click.option("--cloud", "cloud_name", required=True, help="A cloud (catalog, local or qemu).")
@click.option("--force", is_flag=True, help="local/qemu: delete an image instances still use "
              "(its name goes now, its files once they stop).")
@json_option
@pass_env
def delete(env: Env, name: str, cloud_name: str, force: bool, as_json: bool) -> None:
    """Unstage image NAME (ec2: deregister, delete its object; local/qemu: from the cache)."""
    result = _provider(env, _catalog_cloud(env, cloud_name)).delete_image(name, force=force)
    if as_json:
        output.emit_json(result)
    elif "deregistered" in result:
        ids = " ".join(result["deregistered"]) or "no image"
        click.echo(f"deregistered {ids}; object {result['object']} "
                   f"{'deleted' if result['object_deleted'] else 'was not there'}")
    else:
        later = (f" (still used by {', '.join(result['in_use'])}: its files go when they stop)"
                 if result.get("in_use") else "")
        click.echo(f"deleted image {name} from {cloud_name}{later}")


@image.command(name="test")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--cloud", "cloud_name", required=True, help="A cloud of the catalog.")
@click.option("--name", help="Image name while testing (default: the file name).")
@click.option("--size", help="Instance size (a plan `size:`).")
@click.option("--check", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Script run on the instance over SSH (default: SSH works).")
@click.option("--keep/--discard", "keep", default=None,
              help="Keep the image staged, or unstage it (default: ask; no terminal: discard).")
@click.option("--ssh-user", help="Login user of the image (default root).")
@click.option("--ssh-key", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Private key for the cloud's key pair (default: a key made for the run).")
@click.option("--ssh-port", type=int, help="SSH port (default 22).")
@json_option
@pass_env
def test_image(env: Env, file: Path, cloud_name: str, name: str | None, size: str | None,
               check: Path | None, keep: bool | None, ssh_user: str | None,
               ssh_key: Path | None, ssh_port: int | None, as_json: bool) -> None:
    """Stage FILE, boot it, check it over SSH, then keep or unstage it (ExTENCI's test-vm).

    Any cloud whose provider stages images: ec2 (upload + register), local (a rootfs
    tarball), qemu (a raw/qcow2 disk)."""
    import sys

    from cloudinitd.errors import UsageError
    from cloudinitd.images.test_vm import ImageTest

    if not file.is_file():
        raise UsageError(f"{file}: no such image file")
    spec = _catalog_cloud(env, cloud_name)
    say = output.info if as_json else click.echo
    provider = _provider(env, spec)
    test = ImageTest(home=env.home, store=env.store, cloud=spec, provider=provider, file=file,
                     name=provider.check_image_name(name or file.name),
                     size=size, check=check, ssh_user=ssh_user, ssh_key=ssh_key,
                     ssh_port=ssh_port, say=say)

    def decide(result: dict) -> bool:
        if keep is not None:
            say(f"{'Keeping' if keep else 'Discarding'} the image (--{'keep' if keep else 'discard'}).")
            return keep
        if not (sys.stdin.isatty() and sys.stderr.isatty()):
            say("No terminal to ask and no --keep/--discard: discarding the image.")
            return False
        return click.confirm("Does the image work? Keep it staged", default=False, err=True)

    from cloudinitd.engine.converge import Interrupted

    try:
        result = test.run(decide, lambda: _Bar(file.stat().st_size, f"upload {test.name}"))
    except Interrupted:  # the engine's Ctrl-C: the steps taken are undone by now
        output.error("interrupted")
        raise SystemExit(130) from None
    if as_json:
        output.emit_json(result)
    else:
        click.echo(f"image {test.name}: {'kept (staged)' if result['kept'] else 'discarded'}; "
                   "the test instance is terminated")
