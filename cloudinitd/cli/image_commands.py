"""`cloudinitd image`: build the cached base images of the local providers ahead of time."""

from __future__ import annotations

import time
from pathlib import Path

import click

from cloudinitd.cli import output
from cloudinitd.cli.common import Env, json_option, pass_env


@click.group()
def image() -> None:
    """Images: local/qemu base images (build) and your images on ec2 clouds."""


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


# -- images on EC2-compatible clouds (list, save, stage, delete, test) ------------------------


def _catalog_cloud(env: Env, name: str):
    from cloudinitd.catalog import load_catalog
    from cloudinitd.errors import UsageError

    clouds = load_catalog(env.home)
    if name not in clouds:
        known = ", ".join(sorted(clouds)) or "none: add one to clouds.yml"
        raise UsageError(f"no cloud {name!r} in the catalog (known: {known})")
    return clouds[name]


def _ec2(env: Env, spec, what: str):
    from cloudinitd.errors import UsageError
    from cloudinitd.providers import get_provider

    if spec.provider != "ec2":
        raise UsageError(f"`image {what}` works on ec2 clouds; {spec.name!r} is {spec.provider} "
                         "(local/qemu images: `cloudinitd image build`)")
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
@click.option("--cloud", "cloud_name", help="A cloud of the catalog (default: every ec2 one).")
@json_option
@pass_env
def list_images(env: Env, cloud_name: str | None, as_json: bool) -> None:
    """Your images on a cloud (ec2: DescribeImages owned by you), with size and date."""
    from cloudinitd.catalog import load_catalog
    from cloudinitd.providers.ec2.images import Ec2Images

    if cloud_name:
        specs = [_catalog_cloud(env, cloud_name)]
    else:
        specs = [s for s in load_catalog(env.home).values() if s.provider == "ec2"]
    rows = []
    for spec in specs:
        for row in Ec2Images(_ec2(env, spec, "list")).list():
            rows.append({"cloud": spec.name, **row})
    if as_json:
        output.emit_json({"images": rows})
        return
    if not rows:
        click.echo("no images of yours" + (f" on {cloud_name}" if cloud_name else ""))
        return
    click.echo(f"{'CLOUD':<12} {'NAME':<28} {'ID':<22} {'STATE':<10} {'SIZE':>10}  CREATED")
    for r in rows:
        click.echo(f"{r['cloud']:<12} {r['name'] or '-':<28} {r['image_id']:<22} "
                   f"{r['state'] or '-':<10} {_size(r['size']):>10}  {r['created'] or '-'}")


@image.command()
@click.argument("run")
@click.argument("target", metavar="SERVICE[/INDEX]")
@click.argument("name")
@click.option("--stop", is_flag=True, help="Terminate the instance once the image is saved.")
@click.option("--timeout", type=float, default=1800, show_default=True,
              help="Seconds to wait for the image to become available.")
@json_option
@pass_env
def save(env: Env, run: str, target: str, name: str, stop: bool, timeout: float,
         as_json: bool) -> None:
    """Save a booted instance of RUN as image NAME, bootable as `image: NAME` on its cloud."""
    from cloudinitd.engine.access import require_run
    from cloudinitd.engine.context import open_run_without_plan
    from cloudinitd.errors import ProviderError, UsageError
    from cloudinitd.images.naming import check_name
    from cloudinitd.providers.ec2.images import TAG_RUN, TAG_SOURCE, Ec2Images

    check_name(name)
    require_run(env.store, run)  # an unknown run: exit 2 naming the runs there are
    service, _, index_text = target.partition("/")
    rows = env.store.instances(run, service)
    if index_text:
        if not index_text.isdigit():
            raise UsageError(f"{target}: INDEX must be a number")
        rows = [r for r in rows if r["idx"] == int(index_text)]
    if not rows:
        there = ", ".join(f"{r['service']}/{r['idx']}" for r in env.store.instances(run))
        raise UsageError(f"run {run!r} has no instance {target}; instances: {there or 'none'}")
    if len(rows) > 1:
        raise UsageError(f"run {run!r}: {service} has {len(rows)} instances; name one as "
                         f"{service}/INDEX (indexes {', '.join(str(r['idx']) for r in rows)})")
    row = rows[0]
    ctx = open_run_without_plan(env.home, env.store, run)
    provider = ctx.provider(row["cloud"])
    if provider.kind != "ec2":
        raise UsageError(f"`image save` on {provider.kind} instances is not available yet "
                         "(ec2 only in this version)")
    label = f"{service}-{row['idx']}"
    output.info(f"Saving {label} ({row['instance_id']}) of run {run} as {name}...")
    image_id = Ec2Images(provider).save(
        row["instance_id"], name,
        {TAG_RUN: run, TAG_SOURCE: f"{run}/{label}", "Name": name},
        timeout=timeout, say=output.info,
    )
    env.store.event(run, "image", f"saved {label} ({row['instance_id']}) as image {name} "
                    f"({image_id}) on {row['cloud']}", service=service, index=row["idx"])
    stopped = False
    if stop:
        from cloudinitd.engine.terminate import TerminateResult, destroy_instances

        done = TerminateResult(run)
        destroy_instances(ctx, [row], done, sweep=False)  # the engine's own bookkeeping
        if done.errors:
            raise ProviderError(f"image {name} saved, but {label} was not terminated: "
                                + "; ".join(done.errors))
        stopped = True
    if as_json:
        output.emit_json({"run": run, "instance": label, "instance_id": row["instance_id"],
                          "cloud": row["cloud"], "name": name, "image_id": image_id,
                          "stopped": stopped})
    else:
        click.echo(f"saved {label} as {name} ({image_id}) on {row['cloud']}; boot it with "
                   f"`image: {name}`" + (" (instance terminated)" if stopped else ""))


@image.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--cloud", "cloud_name", required=True, help="A cloud of the catalog.")
@click.option("--name", help="Image name (default: the file name).")
@json_option
@pass_env
def stage(env: Env, file: Path, cloud_name: str, name: str | None, as_json: bool) -> None:
    """Upload a raw/qcow2 disk FILE to the cloud's store (resumable) and register it."""
    from cloudinitd.errors import UsageError
    from cloudinitd.images.staging import Stager

    if not file.is_file():
        raise UsageError(f"{file}: no such image file")
    stager = Stager(_ec2(env, _catalog_cloud(env, cloud_name), "stage"))
    name = name or file.name
    with _Bar(file.stat().st_size, f"upload {name}") as bar:
        result = stager.stage(file, name, bar)
    if as_json:
        output.emit_json(result.as_dict())
    else:
        resumed = (f" (resumed: sent parts {result.uploaded_parts} of {result.parts})"
                   if result.resumed else "")
        click.echo(f"staged {file} as {name} ({result.image_id}) at {result.url}{resumed}")


@image.command()
@click.argument("name")
@click.option("--cloud", "cloud_name", required=True, help="A cloud of the catalog.")
@json_option
@pass_env
def delete(env: Env, name: str, cloud_name: str, as_json: bool) -> None:
    """Unstage image NAME: deregister it and delete its staged object."""
    from cloudinitd.images.naming import name_from_url
    from cloudinitd.images.staging import Stager

    stager = Stager(_ec2(env, _catalog_cloud(env, cloud_name), "delete"))
    result = stager.unstage(name_from_url(name))
    if as_json:
        output.emit_json(result)
    else:
        ids = " ".join(result["deregistered"]) or "no image"
        click.echo(f"deregistered {ids}; object {result['object']} "
                   f"{'deleted' if result['object_deleted'] else 'was not there'}")


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
    """Stage FILE, boot it, check it over SSH, then keep or unstage it (ExTENCI's test-vm)."""
    import sys

    from cloudinitd.errors import UsageError
    from cloudinitd.images.test_vm import ImageTest

    if not file.is_file():
        raise UsageError(f"{file}: no such image file")
    spec = _catalog_cloud(env, cloud_name)
    say = output.info if as_json else click.echo
    test = ImageTest(home=env.home, store=env.store, cloud=spec,
                     provider=_ec2(env, spec, "test"), file=file, name=name or file.name,
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
