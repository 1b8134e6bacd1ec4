"""The ``calico-trace`` command line: parse options, call the library, render. No logic here."""

from __future__ import annotations

import importlib
import sys

import click

from tracer import DEFAULT_CALICO_VERSION, __version__
from tracer.errors import InputError

# Subcommands, registered explicitly (no import-time side effects): name -> "module:function".
COMMANDS = {
    "matrix": "tracer.commands.matrix:matrix",
    "render": "tracer.commands.render:render",
    "packet": "tracer.commands.packet:packet",
    "verify": "tracer.commands.verify:verify",
    "conntrack": "tracer.commands.conntrack:conntrack",
    "lab": "tracer.commands.lab:lab",
}


class LazyGroup(click.Group):
    """Imports a subcommand's module only when it runs, so ``--help`` stays fast."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name in COMMANDS if self.get_command(ctx, name) is not None)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name == module_name:
                return None            # not built yet
            raise
        return getattr(module, attr)


@click.group(cls=LazyGroup)
@click.version_option(__version__, message=f"calico-trace %(version)s "
                      f"(renders Calico felix v{DEFAULT_CALICO_VERSION} iptables dataplane "
                      "by default)")
def cli() -> None:
    """Rebuild a Calico node's iptables dataplane in userspace and trace packets through it."""


def main() -> None:
    """Entry point: bad input is one line on stderr and exit status 2, never a traceback."""
    try:
        cli.main(standalone_mode=False)
    except InputError as err:
        click.echo(f"calico-trace: error: {err}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as err:
        err.show()
        sys.exit(2 if err.exit_code == 2 else err.exit_code)
    except click.exceptions.Exit as err:
        sys.exit(err.exit_code)
