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


def cache_options(command):
    """--cache DIR / --no-cache / --verbose, for commands that load a cluster."""
    command = click.option("--verbose", "-v", is_flag=True,
                           help="Say on stderr how long each stage took.")(command)
    command = click.option("--no-cache", is_flag=True,
                           help="Neither read nor write the cache of loaded clusters.")(command)
    command = click.option(
        "--cache", "cache_dir", type=click.Path(file_okay=False, path_type=Path),
        help="Cache directory for loaded clusters (default: $XDG_CACHE_HOME/calico-trace, "
             "i.e. ~/.cache/calico-trace).")(command)
    return command


def load_for_command(paths, *, calico_version, cache_dir, no_cache, clock):
    """Load (or take from the cache) the prepared cluster the command works on."""
    import gc

    from tracer.model.loader import collector_paused
    from tracer.trace.cache import default_cache_dir, load_prepared

    directory = None if no_cache else (cache_dir or default_cache_dir())
    with clock.stage("load cluster"), collector_paused():
        prepared, hit = load_prepared(paths, calico_version=calico_version,
                                      cache_dir=directory)
        # The cluster lives as long as the command: out of the collector's sight (frozen
        # before it runs again), or every collection the trace's allocations trigger walks
        # its millions of objects (half of a warm trace's time at 10,000 pods).
        gc.freeze()
    cluster = prepared.cluster
    where = "off" if directory is None else f"{'hit' if hit else 'miss'} ({directory})"
    clock.note(f"cache {where}: {len(cluster.pods)} pods, {len(cluster.policies)} policies, "
               f"{len(cluster.nodes)} nodes")
    return prepared


def engine_option(default: str):
    """--engine for a command: ``reference`` suits one packet (nothing to compile), ``compiled``
    many (benchmarks/RESULTS.md, engine section, has the crossover)."""
    return click.option(
        "--engine", type=click.Choice(["compiled", "reference"]), default=default,
        show_default=True, help="compiled: the numba engine (tables it cannot express run on "
        "the reference, and it says so); reference: the plain-Python interpreter.")


def use_engine(dataplane, engine: str, *, quiet: bool = False):
    """``dataplane`` with its netfilter tables run by ``engine``; says on stderr when numba
    compiles its kernels. Returns the dataplane and a function listing fallback notes."""
    if engine == "reference":
        return dataplane, lambda: []
    from tracer.engine.runner import compiled
    from tracer.engine.warmup import kernels_cached, warm_up

    if not kernels_cached():
        if not quiet:
            click.echo("engine: numba is compiling the kernels (once; cached for later runs)…",
                       err=True)
        seconds = warm_up()
        if not quiet:
            click.echo(f"engine: kernels compiled in {seconds:.1f} s", err=True)
    dataplane, runner = compiled(dataplane)
    return dataplane, runner.notes


def say_notes(notes) -> None:
    for note in notes():
        click.echo(f"engine: {note}", err=True)
