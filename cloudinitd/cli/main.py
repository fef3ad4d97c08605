"""`cloudinitd` command line: the stable contract of DESIGN.md.

Exit status: 0 success; 1 the run failed (a service failed or is
unhealthy); 2 bad usage or a bad plan. `--json` puts machine-readable output
on stdout and nothing else there.
"""

from __future__ import annotations

import logging
import sys
import traceback
from functools import wraps
from typing import Any

import click

from cloudinitd.cli import (
    change_commands,
    image_commands,
    import_commands,
    output,
    plan_commands,
    record_commands,
    run_commands,
    serve_commands,
    use_commands,
    watch_commands,
)
from cloudinitd.cli.common import Env
from cloudinitd.errors import CloudinitdError, PlanErrors, one_line
from cloudinitd.settings import settings


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
    """Click's own usage errors already exit 2; ours go through `handle_errors`."""

    def invoke(self, ctx: click.Context) -> Any:
        return handle_errors(super().invoke)(ctx)


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


for module in (plan_commands, run_commands, record_commands, image_commands,
               use_commands, import_commands, serve_commands, watch_commands):
    for command in module.COMMANDS:
        cli.add_command(command)
# After boot (issue 15): what a reload would change.
for command in change_commands.COMMANDS:
    cli.add_command(command)


def main() -> None:
    try:
        cli(prog_name="cloudinitd")
    finally:
        # Close SSH sessions cleanly (only if this command opened any).
        remote = sys.modules.get("cloudinitd.remote")
        if remote is not None:
            remote.close_all()


if __name__ == "__main__":
    main()
