"""`cloudinitd serve` (the Auto Scaling API and its reconcile loop) and `cloudinitd user`."""

from __future__ import annotations

import logging
import sys
import time

import click

from cloudinitd.cli import output
from cloudinitd.cli.common import Env, json_option, pass_env

DEFAULT_LISTEN = "127.0.0.1:8445"  # the same as service.server's; kept here so --help is fast


@click.command()
@click.option("--listen", default=DEFAULT_LISTEN, show_default=True, metavar="ADDR:PORT",
              help="Where to serve the API (a literal IP; port 0 picks a free one)."
                   " Loopback unless you put a TLS proxy in front (README: serve).")
@click.option("--interval", type=click.FloatRange(min=0.5, max=3600), default=10.0,
              show_default=True, metavar="S",
              help="Seconds between passes over the groups (desired capacity, dead"
                   " instances).")
@pass_env
def serve(env: Env, listen: str, interval: float) -> None:
    """Serve the AWS Auto Scaling Query API (as Nimbus Phantom did) and keep every group
    at its desired capacity. Requests must be signed (SigV4) with a key from `user add`."""
    from cloudinitd.service.server import serve as run_server

    ours = logging.getLogger("cloudinitd")
    if not ours.handlers:  # without -v: the service's own lines (one per request, actions)
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s cloudinitd: %(levelname)s:"
                                               " %(message)s"))
        service_log = logging.getLogger("cloudinitd.service")
        service_log.addHandler(handler)
        service_log.setLevel(logging.INFO)
        service_log.propagate = False
    run_server(env.home, listen, interval)


@click.group()
def user() -> None:
    """Access keys for `cloudinitd serve` ($CLOUDINITD_HOME/users.json, mode 0600)."""


@user.command("add")
@click.argument("name")
@json_option
@pass_env
def user_add(env: Env, name: str, as_json: bool) -> None:
    """Create user NAME and print its access key pair (the secret is shown only now)."""
    from cloudinitd.service.users import add_user

    created = add_user(env.home, name)
    if as_json:
        output.emit_json(created)
        return
    click.echo(f"user {created['name']}")
    click.echo(f"  access key: {created['access_key']}")
    click.echo(f"  secret key: {created['secret_key']}")
    output.info("The secret key is shown only this once: keep it now.")


@user.command("list")
@json_option
@pass_env
def user_list(env: Env, as_json: bool) -> None:
    """Users and their access keys (never the secrets)."""
    from cloudinitd.service.users import list_users

    users = list_users(env.home)
    if as_json:
        output.emit_json({"users": users})
        return
    if not users:
        click.echo("no users (add one with `cloudinitd user add NAME`)")
    for u in users:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(u["created"] or 0))
        click.echo(f"{u['name']:<20} {u['access_key']}  created {when}")


@user.command("remove")
@click.argument("name")
@json_option
@pass_env
def user_remove(env: Env, name: str, as_json: bool) -> None:
    """Remove user NAME: its key stops working at once. Its groups keep running
    (`cloudinitd terminate OWNER.GROUP` ends one)."""
    from cloudinitd.service.users import remove_user

    remove_user(env.home, name)
    if as_json:
        output.emit_json({"removed": name})
    else:
        click.echo(f"user {name} removed")


COMMANDS = [serve, user]
