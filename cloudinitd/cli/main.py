"""`cloudinitd` command line: the stable contract of DESIGN.md.

Exit status: 0 success; 1 the run failed (a service failed or is
unhealthy); 2 bad usage or a bad plan. `--json` puts machine-readable output
on stdout and nothing else there.
"""

from __future__ import annotations

import gc
import importlib
import logging
import sys
import traceback
from functools import wraps
from typing import Any

import click

from cloudinitd.cli import output
from cloudinitd.cli.common import Env
from cloudinitd.errors import CloudinitdError, PlanErrors, one_line
from cloudinitd.settings import settings

# Every command: the module that defines it (in its COMMANDS) and its short help.
# `cloudinitd --help` lists them from here and a command's module is imported only
# when that command runs: importing them all (paramiko, jsonschema, starlette,
# jinja2, rich) was most of the start-up. tests/test_cli_lazy.py keeps this table
# equal to the modules' COMMANDS and help texts.
_PLAN, _RUN, _RECORD = "plan_commands", "run_commands", "record_commands"
_USE, _IMAGE, _IMPORT = "use_commands", "image_commands", "import_commands"
_SERVE, _WATCH, _CHANGE = "serve_commands", "watch_commands", "change_commands"
LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "boot": (_PLAN, "Launch and configure PLAN; prints the run name."),
    "clean": (_RECORD, "Remove leftovers: with RUN, terminate whatever of it still lives"
              " (found by tag too) and forget it; without, terminate runs whose lifetime is"
              " over and remove local containers/VMs whose run is gone."),
    "clouds": (_RECORD, "The cloud catalog ($CLOUDINITD_HOME/clouds.yml)."),
    "diff": (_CHANGE, "What `reload PLAN --name RUN` would do: instances added and removed per"
             " cloud, services re-configured and which input changed, scale overrides"
             " dropped."),
    "exec": (_USE, "Run `-- COMMAND` on every instance of RUN (or of --service) in parallel."),
    "graph": (_PLAN, "The dependency graph of PLAN and its boot levels, or of a recorded RUN"
              " with each service's state and its instances' addresses."),
    "history": (_RECORD, "Every instance RUN ever launched, and its events."),
    "image": (_IMAGE, "Images: list, save, stage, delete and test them on ec2, local and qemu"
              " clouds."),
    "import": (_IMPORT, "Convert an original cloudinit.d launch plan (TOP.conf) into a plan"
               " directory."),
    "list": (_RECORD, "Every recorded run with its status and live instance count."),
    "logs": (_RECORD, "The boot / ready / terminate logs of RUN (or of one SERVICE)."),
    "output": (_USE, "Addresses and exported values of RUN's live instances, and the plan's"
               " `outputs:`."),
    "reload": (_RUN, "Load an edited PLAN into an existing run, then repair it."),
    "repair": (_RUN, "Re-launch / re-boot what is unhealthy, then re-configure dependents whose"
               " inputs changed."),
    "scale": (_RUN, "Change SERVICE's instance count in RUN (overflow policy applies)."),
    "serve": (_SERVE, "Serve the AWS Auto Scaling Query API (as Nimbus Phantom did) and keep"
              " every group at its desired capacity."),
    "user": (_SERVE, "Access keys for `cloudinitd serve` ($CLOUDINITD_HOME/users.json, mode"
             " 0600)."),
    "schema": (_USE, "The JSON Schema of a plan file (for editors, e.g. yaml-language-server)."),
    "ssh": (_USE, "Log in to an instance of RUN (or run `-- COMMAND` there) with the system"
            " ssh."),
    "status": (_RUN, "Every service and instance of RUN, from the store."),
    "terminate": (_RUN, "Terminate scripts in reverse dependency order, then the instances;"
                  " waits until gone."),
    "watch": (_WATCH, "Keep RUN healthy: replace dead or unhealthy instances of services that"
              " `preserve`, scale services by their `autoscale` sensor, end the run at its"
              " `lifetime`."),
    "validate": (_PLAN, "Load and check PLAN; nothing is launched."),
}


def handle_errors(fn):
    """Known errors become one clean line and their exit code; never a traceback."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise  # click's own flow: --help, usage errors (exit 2), explicit exits
        except PlanErrors as exc:
            for problem in exc.errors:  # one line each (PlanError escapes its own text)
                output.error(str(problem))
            sys.exit(exc.exit_code)
        except CloudinitdError as exc:
            output.error(one_line(str(exc)))
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            output.error("interrupted")
            sys.exit(130)
        except RecursionError:
            # Input is bounded before it is parsed; reaching here is a bug, reported in one line.
            output.error("input nested too deeply (RecursionError)")
            sys.exit(2)
        except MemoryError:
            output.error("out of memory (MemoryError); the input or run is too large")
            sys.exit(2)
        except OSError as exc:
            where = f" {exc.filename}" if exc.filename else ""
            output.error(one_line(f"{exc.strerror or exc}{where}"))
            sys.exit(1)
        except Exception as exc:  # a bug or an unexpected environment problem
            if settings().debug:
                traceback.print_exc()
            output.error(one_line(f"{type(exc).__name__}: {exc}") +
                         " (set CLOUDINITD_DEBUG=1 for a traceback)")
            sys.exit(1)

    return wrapper


class Group(click.Group):
    """Click's own usage errors already exit 2; ours go through `handle_errors`.

    Commands load lazily (see LAZY_COMMANDS)."""

    def invoke(self, ctx: click.Context) -> Any:
        return handle_errors(super().invoke)(ctx)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(LAZY_COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in LAZY_COMMANDS:
            load_commands(LAZY_COMMANDS[cmd_name][0])
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list of `--help`, from the table: no command module is imported."""
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            if name in LAZY_COMMANDS and name not in self.commands:
                # Shortened as click shortens a command's own help.
                stand_in = click.Command(name, help=LAZY_COMMANDS[name][1])
                rows.append((name, stand_in.get_short_help_str(limit)))
                continue
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def load_commands(module: str) -> None:
    """Import one command module and register its COMMANDS."""
    for command in importlib.import_module(f"cloudinitd.cli.{module}").COMMANDS:
        cli.add_command(command)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cloudinitd")
@click.option("-v", "--verbose", count=True,
              help="Log what happens to stderr: -v events, -vv debug (cloudinitd's own logs"
                   " only; libraries stay at warnings, so no request or key is logged).")
@click.pass_context
def cli(ctx: click.Context, verbose: int) -> None:
    """Boot sets of machines on clouds and configure them over SSH in dependency order.

    State lives under $CLOUDINITD_HOME (default ~/.cloudinitd).
    """
    if verbose:
        setup_logging(verbose)
    ctx.obj = Env()


def setup_logging(verbose: int) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("cloudinitd: %(levelname)s: %(name)s: %(message)s"))
    ours = logging.getLogger("cloudinitd")
    ours.addHandler(handler)
    ours.setLevel(logging.INFO if verbose == 1 else logging.DEBUG)
    ours.propagate = False



def main() -> None:
    try:
        cli(prog_name="cloudinitd")
    finally:
        # Close SSH sessions cleanly (only if this command opened any).
        remote = sys.modules.get("cloudinitd.remote")
        if remote is not None:
            remote.close_all()
        # The process ends next: nothing left needs collecting. The interpreter's
        # last garbage collections over every object of networkx, jinja2, paramiko
        # and the run took 0.2-0.3 s of a 2 s boot (measured: bench_fanout W2, 50
        # hosts); frozen objects are skipped. atexit handlers still run as usual.
        gc.freeze()


if __name__ == "__main__":
    main()
