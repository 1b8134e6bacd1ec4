"""Options several subcommands share."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from tracer.errors import InputError, quote

manifest_option = click.option(
    "-f", "--filename", "paths", multiple=True, required=True, type=click.Path(),
    help="Manifest file or directory (repeatable), as with kubectl apply -f.")


def check_output_file(path: str | None, option: str) -> None:
    """Fail before any work if ``path`` cannot be written (a folder, or in a missing one).
    Devices and pipes (``/dev/stdout``) are fine; errors while writing are :func:`writing`'s."""
    if path is None:
        return
    target = Path(path)               # os.path's checks: an unusable name is just "not there"
    if os.path.isdir(target):
        raise InputError("is a directory, not a file", file=path, obj=option)
    if not os.path.isdir(target.parent):
        raise InputError(f"folder {quote(str(target.parent))} does not exist", file=path,
                         obj=option)


@contextmanager
def writing(path: str, option: str) -> Iterator[None]:
    """Turn an OSError while writing ``path`` into one line naming it (disk full, EIO...)."""
    try:
        yield
    except OSError as err:
        raise InputError(f"cannot write: {err.strerror or err}", file=path, obj=option) \
            from None
