"""`launch-vm`: parse, call `cloudinitd.api.launchvm`, print the Nimbus-style lines."""

from __future__ import annotations

import sys
from contextlib import ExitStack
from typing import Any

import click

from cloudinitd.api.launchvm import HELP, LOCAL_KINDS, share_notes, ssh_command  # noqa: F401 (older callers)
from cloudinitd.cli import output
from cloudinitd.cli.common import RUN, Env, parse_vars


def _say(text: str, as_json: bool) -> None:
    """The Nimbus-style lines: stdout, unless --json owns stdout."""
    if as_json:
        output.info(text)
    else:
        click.echo(text)


def _clean_up(run: str, as_json: bool) -> bool:
    """Terminate what the failed launch left; True when nothing is left running."""
    from cloudinitd.api.launchvm import clean_up

    output.info("Terminating what was launched...")
    try:
        result = clean_up(run, home=Env().home)
    except Exception as exc:  # report, then tell the user how to finish the job
        output.error(f"clean-up failed: {exc}")
        ok = False
    else:
        for problem in result.errors:
            output.error(problem)
        ok = result.ok
    _say("Nothing is left running." if ok else
         f"Some of it may still be running: clean up with: cloudinitd terminate {run}", as_json)
    return ok


@click.command(help=HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--name", "run_name", type=RUN, help="Run name (default: sshfs-vm-N).")
@click.option("--var", "vars_", multiple=True, metavar="K=V", help="Override a plan var:"
              " replicas, home_host, home_listen, home_port, home_dir, home_user.")
@click.option("--share", "share_dir", metavar="DIR",
              help="Share this folder with the VMs instead of your whole home.")
@click.option("--read-only", is_flag=True, help="The VMs may read the shared folder, not write.")
@click.option("--ssh-user", help="User to log in as on an EC2 image (default root).")
@click.option("--provider", type=click.Choice(LOCAL_KINDS), default=None,
              help="Without an EC2 cloud: LXC system containers (local, the default) or"
                   " full QEMU VMs with their own kernel (qemu).")
@click.option("--keep", is_flag=True, help="On failure, leave what was launched for debugging.")
@click.option("--dry-run", is_flag=True, help="Render the scripts; launch nothing.")
@click.option("-v", "--verbose", is_flag=True, help="Show each service's progress.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable result on stdout.")
def launch_vm(run_name: str | None, vars_: tuple[str, ...], share_dir: str | None,
              read_only: bool, ssh_user: str | None, provider: str | None, keep: bool,
              dry_run: bool, verbose: bool, as_json: bool) -> None:
    from cloudinitd import api
    from cloudinitd.api.launchvm import SERVICE, launch, prepare

    home = Env().home
    prepared = prepare(home=home, vars=parse_vars(vars_), share_dir=share_dir,
                       read_only=read_only, ssh_user=ssh_user, provider=provider,
                       dry_run=dry_run)
    if dry_run:
        from cloudinitd.cli.plan_commands import print_dry_run

        report = api.dry_run(prepared.plan, run_name)
        if as_json:
            output.emit_json({**report, "plan_path": str(prepared.path)})
        else:
            print_dry_run(report)
        return
    count = prepared.plan.services[SERVICE].count
    _say(f"Launching {'your VM' if count == 1 else f'your {count} VMs'}"
         " (this may take a minute)...", as_json)
    progress = output.progress_for_terminal(quiet=not verbose)
    started: list[str] = []

    def on_start(run: str) -> None:
        started.append(run)
        display.enter_context(progress)

    def give_up(message: str, code: int) -> None:
        output.error(message)
        if started and (keep or not _clean_up(started[0], as_json)):
            output.info(f"Clean up with: cloudinitd terminate {started[0]}")
        raise SystemExit(code) from None

    try:
        with ExitStack() as display:
            done = launch(prepared, home=home, name=run_name, progress=progress,
                          on_start=on_start)
    except (api.Interrupted, KeyboardInterrupt):
        give_up("interrupted", 130)
    except Exception as exc:  # unexpected: still never leave VMs behind silently
        if not started:
            raise
        give_up(f"launch failed: {type(exc).__name__}: {exc}", 1)
    _failed(done.outcome, keep, as_json) if not done.ok else _print_success(done, as_json)


def _failed(outcome: Any, keep: bool, as_json: bool) -> None:
    output.print_failures(outcome)
    _say(f"Launch failed (run {(run := outcome.run)}).", as_json)
    if keep:
        _say(f"Left running for debugging (--keep). Look with: cloudinitd status {run};"
             f" clean up with: cloudinitd terminate {run}", as_json)
    else:
        _clean_up(run, as_json)
    if as_json:
        output.emit_json({"run": run, "ok": False, "kept": keep,
                          "services": {n: s.as_dict() for n, s in outcome.services.items()}})
    raise SystemExit(1)


def _print_success(done: Any, as_json: bool) -> None:
    terminate = f"cloudinitd terminate {done.run}"
    if as_json:
        for note in done.notes:
            output.info(note)
        output.emit_json({"run": done.run, "ok": True, "seconds": round(done.outcome.seconds, 2),
                          "vms": done.vm_dicts(), "share": dict(done.share),
                          "terminate": terminate})
        return
    click.echo("Success!")
    for vm in done.vms:
        click.echo(f"Access your VM with: {vm.ssh}")
    mounts = {(vm.home_source, vm.mount_point) for vm in done.vms if vm.mount_point}
    what = "The shared folder" if done.shared_chosen else "Your home"
    mode = " (read-only)" if done.share.get("read_only") else ""
    for source, mount in sorted(mounts):
        click.echo(f"{what} ({source.partition(':')[2]}) is mounted at {mount}{mode}")
    for note in done.notes:
        click.echo(note)
    click.echo(f"Terminate your VM{'s' if len(done.vms) > 1 else ''} with: {terminate}")


def main() -> None:
    from cloudinitd.cli.main import handle_errors

    handle_errors(launch_vm.main)(prog_name="launch-vm", standalone_mode=True)


if __name__ == "__main__":
    sys.exit(main())
