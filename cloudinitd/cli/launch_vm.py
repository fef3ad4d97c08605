"""`launch-vm`: one command for a VM that mounts your home, as Nimbus's launch-vm.sh did.

It boots the shipped plan `plans/sshfs-vm` in-process (the same engine as
`cloudinitd boot`) and prints how to reach and end the VM. With no Nimbus
variables set it uses the `local` provider; CLOUDINITD_IAAS_URL (or the
access key variables) switch to an EC2-compatible cloud, described by a small
wrapper plan kept under $CLOUDINITD_HOME/launch-vm/ so that `status`,
`repair` and `terminate` of the run find it again. The wrapper names the
variables that hold the credentials, never their values.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import sys
from pathlib import Path
from typing import Any

import click
import yaml

from cloudinitd.cli import output
from cloudinitd.cli.common import RUN, Env, parse_vars
from cloudinitd.errors import UsageError

PLAN = "sshfs-vm"
SERVICE = "vm"
IAAS_CLOUD = "iaas"
ENV_URL = "CLOUDINITD_IAAS_URL"
ENV_ACCESS = "CLOUDINITD_IAAS_ACCESS_KEY"
ENV_SECRET = "CLOUDINITD_IAAS_SECRET_KEY"
ENV_IMAGE = "CLOUDINITD_IAAS_IMAGE"
ENV_KEYNAME = "CLOUDINITD_IAAS_SSHKEYNAME"
ENV_KEY = "CLOUDINITD_IAAS_SSHKEY"
ENV_COUNT = "CLOUDINITD_SSHFS_REPLICA_COUNT"

HELP = f"""Launch a VM that mounts your home folder, and say how to use it.

\b
  $ launch-vm
  Launching your VM (this may take a minute)...
  Success!
  Access your VM with: ssh -i KEY -o UserKnownHostsFile=FILE root@ADDRESS
  Terminate your VM with: cloudinitd terminate sshfs-vm-1

Boots the shipped plan `sshfs-vm`: each VM mounts your home folder (or the
folder given with --share) at /mnt/<home host> over sshfs, through a
run-scoped, sftp-only SSH server that cloudinitd starts for this run and
`cloudinitd terminate` stops (no sshd of your own is needed, and your own
keys never leave this machine). The VMs reach that folder, with your rights,
and no other file of this machine: the server chroots to it.

\b
Environment (the Nimbus launch-vm variables):
  {ENV_COUNT}   how many VMs (default 1)
  {ENV_URL}              EC2-compatible endpoint (OpenStack, Eucalyptus,
                                   Nimbus, AWS); without it: LXC containers
                                   here, or QEMU VMs with --provider qemu
  {ENV_ACCESS}       access key of that cloud
  {ENV_SECRET}       secret key of that cloud (both are read from
                                   the environment at each call, never stored)
  {ENV_IMAGE}            image to boot (an AMI id on EC2; default debian-12)
  {ENV_KEYNAME}       the cloud's key pair to launch with ...
  {ENV_KEY}           ... and the private key file matching it (default:
                                   a key made for the run, imported into the cloud)
  CLOUDINITD_HOME                  where runs are recorded (default ~/.cloudinitd)

\b
The folder shared is --share DIR, else $HOME (under sudo: SUDO_USER's home,
served as SUDO_USER); --read-only refuses the VMs' writes. On an EC2 cloud the
VMs cannot know this machine's address: give one they can reach with
--var home_host=ADDRESS (the share listens there; if that address is not on
this machine, e.g. behind a NAT, also --var home_listen=LOCAL_ADDRESS).
home_port, home_dir (= --share), home_read_only (= --read-only) and home_user
override the rest.

If the launch fails, whatever was launched is terminated again (unless
--keep) and the reason is printed. Exit status: 0 success, 1 the launch
failed, 2 bad usage.
"""


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def replica_count() -> int | None:
    text = _env(ENV_COUNT)
    if text is None:
        return None
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise UsageError(f"{ENV_COUNT} must be a whole number >= 1, got {text!r}")
    return count


def iaas_cloud() -> dict[str, Any] | None:
    """The ec2 cloud entry the Nimbus variables describe, or None for the local provider.

    Credentials are given by the NAMES of the variables holding them.
    """
    url, access, secret = _env(ENV_URL), _env(ENV_ACCESS), _env(ENV_SECRET)
    keyname, key = _env(ENV_KEYNAME), _env(ENV_KEY)
    if not (url or access or secret):
        for name in (ENV_KEYNAME, ENV_KEY):
            if _env(name):
                raise UsageError(
                    f"{name} is set but no cloud is: set {ENV_URL} (an"
                    " EC2-compatible endpoint) or unset it for local VMs"
                )
        return None
    if bool(access) != bool(secret):
        missing = ENV_SECRET if access else ENV_ACCESS
        raise UsageError(
            f"{missing} is not set: the cloud needs both {ENV_ACCESS} and {ENV_SECRET}"
        )
    if bool(keyname) != bool(key):
        raise UsageError(
            f"set both {ENV_KEYNAME} (the cloud's key pair) and {ENV_KEY} (the"
            " private key file for it), or neither (a key made for the run)"
        )
    if key and not Path(key).expanduser().is_file():
        raise UsageError(f"{ENV_KEY}: no such file: {key}")
    if not _env(ENV_IMAGE):
        raise UsageError(
            f"{ENV_IMAGE} is not set: name the image (an AMI id) to boot on"
            f" {url or 'the EC2 cloud'}"
        )
    cloud: dict[str, Any] = {"provider": "ec2"}
    if url:
        from cloudinitd.secretcheck import url_problem

        problem = url_problem(url)  # before the URL is written into the wrapper plan
        if problem:
            raise UsageError(f"{ENV_URL} {problem}")
        cloud["endpoint"] = url
    if access:
        cloud["credentials"] = {"access_key_env": ENV_ACCESS, "secret_key_env": ENV_SECRET}
    if keyname:
        cloud["key_name"] = keyname
    return cloud


def wrapper_plan(home: Path, cloud: dict[str, Any] | None, ssh_user: str | None,
                 builtin: str | None = None) -> Path:
    """The shipped plan with the cloud / image the variables name, kept where the run finds it.

    `status`, `repair` and `terminate` reload a run's plan from its recorded
    path, so the wrapper lives under $CLOUDINITD_HOME/launch-vm/, named by its
    content (the same settings give the same file).
    """
    from cloudinitd.paths import find_plan

    shipped = find_plan(PLAN)
    data = yaml.safe_load(shipped.read_text())
    data["name"] = PLAN
    defaults = data.setdefault("defaults", {})
    if cloud is not None:
        data["clouds"] = {IAAS_CLOUD: cloud}
        defaults["cloud"] = IAAS_CLOUD
    elif builtin:
        defaults["cloud"] = builtin  # the built-in `qemu` cloud: full VMs on this machine
    if _env(ENV_IMAGE):
        defaults["image"] = _env(ENV_IMAGE)
    if _env(ENV_KEY):
        defaults["ssh_key"] = str(Path(_env(ENV_KEY) or "").expanduser().resolve())
    if ssh_user:
        defaults["ssh_user"] = ssh_user
    where = (cloud.get("endpoint", "the default EC2 endpoint") if cloud
             else f"{builtin} VMs" if builtin else "local containers")
    text = (
        f"# Made by launch-vm from {shipped} for {where}.\n"
        "# Credentials are the NAMES of environment variables; no secret is stored here.\n"
        + yaml.safe_dump(data, sort_keys=False)
    )
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    folder = home / "launch-vm"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / f"{PLAN}-{digest}.yml"
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def ssh_command(key: Path, known_hosts: Path, user: str, address: str, port: int) -> str:
    """A command that logs in without prompts: the run's key and its pinned host keys."""
    argv = [
        "ssh",
        "-i",
        str(key),
        "-o",
        f"UserKnownHostsFile={known_hosts}",
        "-o",
        "IdentitiesOnly=yes",
    ]
    if port != 22:
        argv += ["-p", str(port)]
    argv.append(f"{user}@{address}")
    return " ".join(shlex.quote(a) for a in argv)


def _say(text: str, as_json: bool) -> None:
    """The Nimbus-style lines: stdout, unless --json owns stdout."""
    if as_json:
        output.info(text)
    else:
        click.echo(text)


def _vms(ctx) -> list[dict[str, Any]]:
    svc = ctx.plan.services[SERVICE]
    attrs = ctx.store.attributes(ctx.run)
    vms = []
    for row in sorted(ctx.store.instances(ctx.run, SERVICE), key=lambda r: r["idx"]):
        target = ctx.target(svc, row)
        exported = attrs.get((SERVICE, row["idx"]), {})
        vms.append(
            {
                "index": row["idx"],
                "address": row["address"],
                "instance_id": row["instance_id"],
                "cloud": row["cloud"],
                "mount_point": exported.get("mount_point"),
                "home_source": exported.get("home_source"),
                "ssh": ssh_command(
                    target.key_path, target.known_hosts, target.user, row["address"], target.port
                ),
            }
        )
    return vms


def _clean_up(ctx, as_json: bool) -> bool:
    """Terminate what the failed launch left; True when nothing is left running."""
    from cloudinitd.engine.terminate import terminate_run
    from cloudinitd.homeshare import stop_home_share

    output.info("Terminating what was launched...")
    try:
        result = terminate_run(ctx)
        stop_home_share(ctx.run_dir)
    except Exception as exc:  # report, then tell the user how to finish the job
        output.error(f"clean-up failed: {exc}")
        ok = False
    else:
        for problem in result.errors:
            output.error(problem)
        ok = result.ok
    if ok:
        _say("Nothing is left running.", as_json)
    else:
        _say(
            f"Some of it may still be running: clean up with: cloudinitd terminate {ctx.run}",
            as_json,
        )
    return ok


@click.command(help=HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--name", "run_name", type=RUN, help="Run name (default: sshfs-vm-N).")
@click.option(
    "--var",
    "vars_",
    multiple=True,
    metavar="K=V",
    help="Override a plan var: replicas, home_host, home_listen, home_port, home_dir, home_user.",
)
@click.option(
    "--share",
    "share_dir",
    metavar="DIR",
    help="Share this folder with the VMs instead of your whole home.",
)
@click.option("--read-only", is_flag=True, help="The VMs may read the shared folder, not write.")
@click.option("--ssh-user", help="User to log in as on an EC2 image (default root).")
@click.option("--provider", type=click.Choice(["local", "qemu"]), default=None,
              help="Without an EC2 cloud: LXC system containers (local, the default) or"
                   " full QEMU VMs with their own kernel (qemu).")
@click.option("--keep", is_flag=True, help="On failure, leave what was launched for debugging.")
@click.option("--dry-run", is_flag=True, help="Render the scripts; launch nothing.")
@click.option("-v", "--verbose", is_flag=True, help="Show each service's progress.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable result on stdout.")
def launch_vm(
    run_name: str | None,
    vars_: tuple[str, ...],
    share_dir: str | None,
    read_only: bool,
    ssh_user: str | None,
    provider: str | None,
    keep: bool,
    dry_run: bool,
    verbose: bool,
    as_json: bool,
) -> None:
    from cloudinitd.catalog import load_catalog
    from cloudinitd.engine.boot import boot, start_run
    from cloudinitd.engine.boot import dry_run as render_dry_run
    from cloudinitd.engine.converge import Interrupted
    from cloudinitd.homeshare import share_info
    from cloudinitd.paths import find_plan
    from cloudinitd.plan.loader import load_plan

    env = Env()
    overrides = parse_vars(vars_)
    if share_dir:
        if overrides.get("home_dir"):
            raise UsageError("give the folder to share once: --share DIR or --var home_dir=DIR")
        folder = Path(share_dir).expanduser()
        if not folder.is_dir():
            raise UsageError(f"--share {share_dir}: no such folder")
        overrides["home_dir"] = str(folder.resolve())
    if read_only:
        overrides["home_read_only"] = "true"
    count = replica_count()
    if count is not None:
        overrides.setdefault("replicas", str(count))
    if provider and any(_env(n) for n in (ENV_URL, ENV_ACCESS, ENV_SECRET)):
        raise UsageError(f"--provider {provider} and {ENV_URL} / the access keys name two"
                         " clouds: unset one")
    cloud = iaas_cloud()
    if cloud is None and ssh_user:
        raise UsageError("--ssh-user applies to EC2 clouds only (local VMs log in as root)")
    if cloud is not None and not dry_run:
        if not (overrides.get("home_host") or overrides.get("home_listen")):
            raise UsageError(
                "on an EC2 cloud the VMs cannot know this machine's address:"
                " give one they can reach with --var home_host=ADDRESS"
            )
        # The share listens there too, unless home_listen names this machine's
        # own address behind a NAT.
        overrides.setdefault("home_listen", overrides.get("home_host", ""))
    builtin = provider if provider and provider != "local" else None
    if cloud is None and not builtin and not _env(ENV_IMAGE):
        path = find_plan(PLAN)
    else:
        path = wrapper_plan(env.home, cloud, ssh_user, builtin)
    plan = load_plan(path, overrides=overrides, catalog=load_catalog(env.home))
    if dry_run:
        from cloudinitd.cli.plan_commands import print_dry_run

        report = render_dry_run(plan, run_name or f"{plan.name}-dry-run")
        if as_json:
            output.emit_json({**report, "plan_path": str(path)})
        else:
            print_dry_run(report)
        return

    count = plan.services[SERVICE].count
    what = "your VM" if count == 1 else f"your {count} VMs"
    _say(f"Launching {what} (this may take a minute)...", as_json)
    progress = output.progress_for_terminal(quiet=not verbose)
    ctx = start_run(env.home, env.store, plan, overrides, run_name, progress=progress)
    try:
        with progress:
            result = boot(ctx)
    except (Interrupted, KeyboardInterrupt):
        output.error("interrupted")
        if keep or not _clean_up(ctx, as_json):
            output.info(f"Clean up with: cloudinitd terminate {ctx.run}")
        raise SystemExit(130) from None
    except Exception as exc:  # unexpected: still never leave VMs behind silently
        output.error(f"launch failed: {type(exc).__name__}: {exc}")
        if keep or not _clean_up(ctx, as_json):
            output.info(f"Clean up with: cloudinitd terminate {ctx.run}")
        raise SystemExit(1) from None

    if not result.ok:
        output.print_failures(result)
        _say(f"Launch failed (run {ctx.run}).", as_json)
        if keep:
            _say(
                f"Left running for debugging (--keep). Look with: cloudinitd status {ctx.run};"
                f" clean up with: cloudinitd terminate {ctx.run}",
                as_json,
            )
        else:
            _clean_up(ctx, as_json)
        if as_json:
            output.emit_json(
                {
                    "run": ctx.run,
                    "ok": False,
                    "kept": keep,
                    "services": {n: s.as_dict() for n, s in result.services.items()},
                }
            )
        raise SystemExit(1)

    vms = _vms(ctx)
    terminate = f"cloudinitd terminate {ctx.run}"
    share = share_info(ctx.run_dir)
    notes = share_notes(share, chosen=bool(overrides.get("home_dir")))
    if as_json:
        for note in notes:
            output.info(note)
        output.emit_json(
            {
                "run": ctx.run,
                "ok": True,
                "seconds": round(result.seconds, 2),
                "vms": vms,
                "share": share,
                "terminate": terminate,
            }
        )
        return
    click.echo("Success!")
    for vm in vms:
        click.echo(f"Access your VM with: {vm['ssh']}")
    mounts = {(vm["home_source"], vm["mount_point"]) for vm in vms if vm["mount_point"]}
    what = "The shared folder" if overrides.get("home_dir") else "Your home"
    mode = " (read-only)" if share.get("read_only") else ""
    for source, mount in sorted(mounts):
        click.echo(f"{what} ({source.partition(':')[2]}) is mounted at {mount}{mode}")
    for note in notes:
        click.echo(note)
    click.echo(f"Terminate your VM{'s' if len(vms) > 1 else ''} with: {terminate}")


def share_notes(share: dict[str, Any], chosen: bool) -> list[str]:
    """What the VMs can reach on this machine, when it is more than a user might expect."""
    notes = []
    if share and not share.get("confined", True):
        notes.append(
            f"Note: cloudinitd does not run as root, so the share cannot chroot: the VMs can"
            f" reach every file {share.get('user')} can on this machine."
        )
    if share.get("user") == "root" and not chosen:
        access = "read" if share.get("read_only") else "read and write"
        notes.append(
            f"Note: you run as root, so the VMs can {access} root's home ({share.get('dir')})"
            " as root (nothing outside it). To share less: launch-vm --share DIR"
            " (add --read-only to refuse writes)."
        )
    return notes


def main() -> None:
    from cloudinitd.cli.main import handle_errors

    handle_errors(launch_vm.main)(prog_name="launch-vm", standalone_mode=True)


if __name__ == "__main__":
    sys.exit(main())
