"""Start-up: `cloudinitd --help` lists every command without importing any command module."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import click

import cloudinitd.cli
from cloudinitd.cli.main import LAZY_COMMANDS, cli

# Every command module of the package, found on disk: a new one cannot be forgotten.
MODULES = sorted(m.name for m in pkgutil.iter_modules(cloudinitd.cli.__path__)
                 if m.name.endswith("_commands"))


def test_the_lazy_table_is_every_command_with_its_own_help():
    real = {}
    for module in MODULES:
        for command in importlib.import_module(f"cloudinitd.cli.{module}").COMMANDS:
            real[command.name] = (module, command.get_short_help_str(10**6))
    assert real == LAZY_COMMANDS  # a new command goes into cli/main.py LAZY_COMMANDS too


def test_help_imports_no_command_module_and_lists_them_all():
    code = ("import sys; from cloudinitd.cli.main import cli\n"
            "try:\n    cli(['--help'], prog_name='cloudinitd')\nexcept SystemExit:\n    pass\n"
            "heavy = ('paramiko', 'networkx', 'jsonschema', 'jinja2', 'rich', 'starlette')\n"
            "print('LOADED', sorted(m for m in sys.modules if m.endswith('_commands')"
            " or m.split('.')[0] in heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.splitlines()[-1] == "LOADED []"
    listed = out.split("Commands:")[1]
    for name in LAZY_COMMANDS:
        assert f"\n  {name} " in listed


def test_a_command_loads_when_it_is_asked_for():
    ctx = click.Context(cli)
    command = cli.get_command(ctx, "schema")
    assert command is not None and command.name == "schema"
    assert cli.get_command(ctx, "no-such-command") is None
