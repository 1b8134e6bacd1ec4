"""The ``calico-trace`` command line: parse options, call the library, render. No logic here."""

from __future__ import annotations

import importlib
import sys

import click

from tracer import DEFAULT_CALICO_VERSION, __version__
from tracer.errors import MESSAGE_LIMIT, InputError, escape, shorten

# Subcommands, registered explicitly (no import-time side effects): name -> "module:function".
COMMANDS = {
    "matrix": "tracer.commands.matrix:matrix",
    "render": "tracer.commands.render:render",
    "packet": "tracer.commands.packet:packet",
    "verify": "tracer.commands.verify:verify",
    "conntrack": "tracer.commands.conntrack:conntrack",
    "bench": "tracer.commands.bench:bench",
    "lab": "tracer.commands.lab:lab",
    "replay": "tracer.commands.replay:replay",
    "up": "tracer.commands.live:up",
    "down": "tracer.commands.live:down",
    "exec": "tracer.commands.live:exec_",
    "flows": "tracer.commands.live:flows",
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


def main(argv: list[str] | None = None) -> None:
    """Entry point: bad input is one line on stderr and exit status 2, never a traceback.

    ``argv`` (default: ``sys.argv[1:]``) lets tests drive the real entry point in-process."""
    try:
        cli.main(args=argv, prog_name="calico-trace", standalone_mode=False)
    except InputError as err:
        _fail(str(err))
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.exceptions.NoArgsIsHelpError as err:
        click.echo(err.ctx.get_help())
        _fail(f"{err.ctx.command_path}: no command given (see above)")
    except click.UsageError as err:
        command = err.ctx.command_path if err.ctx is not None else "calico-trace"
        _fail(f"{command}: {err.format_message()}")
    except click.ClickException as err:
        _fail(err.format_message(), status=err.exit_code)
    except click.exceptions.Exit as err:
        sys.exit(err.exit_code)


def _fail(message: str, status: int = 2) -> None:
    """One bounded, printable line on stderr, then exit (click's usage errors are three)."""
    click.echo(f"calico-trace: error: {escape(shorten(message, MESSAGE_LIMIT))}", err=True)
    sys.exit(status)
