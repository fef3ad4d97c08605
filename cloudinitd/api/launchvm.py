"""`launch-vm` as a library call: a VM that mounts your home, as Nimbus's launch-vm.sh did.

It boots the shipped plan `plans/sshfs-vm` (through `cloudinitd.api.boot`).
With no Nimbus variables set it uses the `local` provider; CLOUDINITD_IAAS_URL
(or the access key variables) switch to an EC2-compatible cloud, described by
a small wrapper plan kept under $CLOUDINITD_HOME/launch-vm/ so that `status`,
`repair` and `terminate` of the run find it again. The wrapper names the
variables that hold the credentials, never their values. The command line
(cli/launch_vm.py) parses, calls `prepare` and `launch`, and prints.
"""

from __future__ import annotations

import hashlib
import os
import shlex
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cloudinitd import kinds
from cloudinitd.api import lifecycle
from cloudinitd.api.home import home_path, opened_store
from cloudinitd.api.results import RunOutcome
from cloudinitd.errors import UsageError
from cloudinitd.plan.model import Plan

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
# `--provider`: the built-in kinds whose cloud exists without an entry (on this machine).
LOCAL_KINDS = list(kinds.implicit_clouds(kinds.BUILTIN))

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
    cloud: dict[str, Any] = {"provider": kinds.iaas_kind(kinds.BUILTIN)}
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




@dataclass(frozen=True)
class Prepared:
    """What `launch` boots: the plan (shipped, or the wrapper for the cloud the variables
    name), its file and the vars given to it."""

    plan: Plan
    path: Path
    overrides: Mapping[str, str]
    shared_chosen: bool  # --share / home_dir: a folder, not the whole home


def prepare(*, home: str | Path | None = None, vars: Mapping[str, str] | None = None,
            share_dir: str | None = None, read_only: bool = False,
            ssh_user: str | None = None, provider: str | None = None,
            dry_run: bool = False) -> Prepared:
    """The plan and vars the options and the Nimbus variables describe; UsageError when
    they contradict each other (nothing written yet then)."""
    overrides = dict(vars or {})
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
    # The default cloud needs no wrapper; another built-in one (qemu VMs) does.
    builtin = provider if provider and provider != kinds.default_cloud(kinds.BUILTIN) else None
    if cloud is None and not builtin and not _env(ENV_IMAGE):
        from cloudinitd.paths import find_plan

        path = find_plan(PLAN)
    else:
        path = wrapper_plan(home_path(home), cloud, ssh_user, builtin)
    plan = lifecycle.load(path, home=home, vars=overrides)
    return Prepared(plan, path, overrides, bool(overrides.get("home_dir")))


@dataclass(frozen=True)
class Vm:
    index: int
    address: str
    instance_id: str
    cloud: str
    mount_point: str | None
    home_source: str | None
    ssh: str  # a login command that works as printed


@dataclass(frozen=True)
class Launched:
    """A launch: the boot's outcome and, when it worked, the VMs and the share."""

    outcome: RunOutcome
    vms: tuple[Vm, ...] = ()
    share: Mapping[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    shared_chosen: bool = False  # a folder given, not the whole home

    @property
    def run(self) -> str:
        return self.outcome.run

    @property
    def ok(self) -> bool:
        return self.outcome.ok

    def vm_dicts(self) -> list[dict[str, Any]]:
        return [asdict(vm) for vm in self.vms]


def launch(prepared: Prepared, *, home: str | Path | None = None, name: str | None = None,
           progress: lifecycle.Progress = lifecycle.quiet,
           on_start: Callable[[str], Any] | None = None) -> Launched:
    """Boot the prepared plan; on success, how to reach each VM and what the share serves.
    A failed boot leaves what it launched (see `clean_up`)."""
    from cloudinitd.homeshare import share_info

    outcome = lifecycle.boot(prepared.plan, home=home, name=name, vars=prepared.overrides,
                            progress=progress, on_start=on_start)
    if not outcome.ok:
        return Launched(outcome)
    with opened_store(home) as store:
        from cloudinitd.engine.context import open_run

        ctx = open_run(home_path(home), store, outcome.run)
        vms = _vms(ctx)
        share = share_info(ctx.run_dir)
    return Launched(outcome, vms, share, tuple(share_notes(share, prepared.shared_chosen)),
                    prepared.shared_chosen)


def clean_up(run: str, *, home: str | Path | None = None) -> RunOutcome:
    """Terminate what a failed launch left (its home share stops with it)."""
    return lifecycle.terminate(run, home=home)


def _vms(ctx: Any) -> tuple[Vm, ...]:
    svc = ctx.plan.services[SERVICE]
    attrs = ctx.store.attributes(ctx.run)
    vms = []
    for row in sorted(ctx.store.instances(ctx.run, SERVICE), key=lambda r: r.idx):
        target = ctx.target(svc, row)
        exported = attrs.get((SERVICE, row.idx), {})
        vms.append(Vm(row.idx, row.address, row.instance_id, row.cloud,
                      exported.get("mount_point"), exported.get("home_source"),
                      ssh_command(target.key_path, target.known_hosts, target.user,
                                  row.address, target.port)))
    return tuple(vms)


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
