"""Options several subcommands share."""

from __future__ import annotations

import click

manifest_option = click.option(
    "-f", "--filename", "paths", multiple=True, required=True, type=click.Path(),
    help="Manifest file or directory (repeatable), as with kubectl apply -f.")
