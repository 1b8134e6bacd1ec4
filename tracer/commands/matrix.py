"""``calico-trace matrix``: which pods may connect to which, for one protocol and port."""

from __future__ import annotations

import contextlib
import shlex
import sys

import click

from tracer.commands.options import (cache_options, check_output_file, load_for_command,
                                     manifest_option, writing)
from tracer.commands.stages import StageClock
from tracer.errors import InputError, quote

# Up to this many pods, the HTML page embeds every pair's trace (traced through the
# dataplane); above it, a cell shows the command that traces the pair.
EMBED_TRACES_UP_TO = 20


STREAMED = {"json": "json_chunks", "jsonl": "jsonl_chunks", "csv": "csv_chunks"}


@click.command()
@manifest_option
@click.option("--protocol", type=click.Choice(["tcp", "udp", "sctp", "icmp"],
                                              case_sensitive=False),
              default="tcp", show_default=True, help="Protocol of the probe connection.")
@click.option("--port", type=click.IntRange(1, 65535), default=80, show_default=True,
              help="Destination port (ignored for icmp, which probes with an echo request).")
@click.option("--output", "-o",
              type=click.Choice(["text", "json", "jsonl", "csv", "parquet", "summary", "html"]),
              default="text", show_default=True,
              help="text: a grid; json (an array), jsonl (one pair per line), csv: every pair, "
                   "streamed; parquet: every pair into --out; summary: allowed pairs by "
                   "namespace pair; html: a heatmap page grouped by namespace.")
@click.option("--out", "out_path", metavar="FILE",
              help="Write the output to FILE instead of standard output (needed for parquet).")
@click.option("--from-namespace", "from_namespaces", multiple=True, metavar="NS",
              help="Only sources in this namespace (repeatable).")
@click.option("--to-namespace", "to_namespaces", multiple=True, metavar="NS",
              help="Only destinations in this namespace (repeatable).")
@click.option("--from-selector", metavar="SELECTOR",
              help="Only sources whose labels match this Calico selector.")
@click.option("--to-selector", metavar="SELECTOR",
              help="Only destinations whose labels match this Calico selector.")
@click.option("--ascii", "ascii_only", is_flag=True,
              help="Text grid with Y/. instead of \u2713/\u2717.")
@click.option("--plot", "plot_path", metavar="FILE.png|FILE.svg",
              help="Also draw the heatmap to this image file.")
@click.option("--engine", type=click.Choice(["policy", "compiled", "reference"]),
              default="policy", show_default=True,
              help="policy: evaluate the policies directly (set-based, fastest); compiled / "
                   "reference: trace one packet per pair through the rendered dataplane on "
                   "that engine (sees everything the rules and the packet path do).")
@cache_options
@click.option("--dataplane", type=click.Choice(["iptables", "nftables"]), default=None,
              help="With --engine compiled/reference: trace through felix's iptables tables "
                   "or its nftables table; default: the FelixConfiguration's nftablesMode.")
def matrix(paths: tuple[str, ...], protocol: str, port: int, output: str, out_path: str | None,
           from_namespaces: tuple[str, ...], to_namespaces: tuple[str, ...],
           from_selector: str | None, to_selector: str | None, ascii_only: bool,
           plot_path: str | None, engine: str, cache_dir, no_cache: bool, verbose: bool,
           dataplane: str | None = None) -> None:
    """Pod-to-pod reachability under Calico policy (egress of the source AND ingress of the
    destination), for every ordered pair of pods; a pod to itself is always allowed."""
    from tracer.policy.matrix import Probe, compute_matrix

    if output == "parquet" and not out_path:
        raise InputError("--output parquet writes a file: give it with --out FILE",
                         obj="--output")
    check_output_file(out_path, "--out")
    sources = pod_filter(from_namespaces, from_selector, "--from-selector")
    destinations = pod_filter(to_namespaces, to_selector, "--to-selector")
    filtered = sources is not None or destinations is not None
    if filtered and (output == "html" or plot_path):
        raise InputError("the heatmap (html, --plot) shows the whole square matrix; drop the "
                         "--from-*/--to-* filters or use text, json, jsonl, csv, parquet or "
                         "summary", obj="--output")
    clock = StageClock(verbose=verbose)
    cluster = load_for_command(paths, calico_version=None, cache_dir=cache_dir,
                               no_cache=no_cache, clock=clock).cluster
    probe = Probe.make(protocol, port)
    with clock.stage(f"matrix ({engine})"):
        result = _compute(cluster, probe, engine, dataplane) if engine != "policy" else \
            compute_matrix(cluster, probe)
        result = result.select(_keeps(cluster, sources), _keeps(cluster, destinations))
    if plot_path:
        from tracer.render.matrix_plot import plot_matrix
        with clock.stage("plot"):
            plot_matrix(result, plot_path)
    with clock.stage(f"write {output}"):
        if output == "parquet":
            from tracer.policy.matrix_render import write_parquet
            with writing(out_path, "--out"):
                write_parquet(result, out_path)
        else:
            with _destination(out_path) as out:
                _write(result, output, out, out_path, ascii_only=ascii_only, cluster=cluster,
                       manifests=" ".join(f"-f {shlex.quote(str(p))}" for p in paths),
                       protocol=protocol, port=port)
    clock.report()


def pod_filter(namespaces: tuple[str, ...], selector: str | None, option: str):
    """A test on a workload endpoint, or None when nothing narrows this side."""
    if not namespaces and selector is None:
        return None
    from tracer.selector.selector import SelectorError, parse_selector
    try:
        matches = parse_selector(selector).matcher if selector is not None else None
    except SelectorError as err:
        raise InputError(f"invalid selector {quote(selector)}: {err}", obj=option) from None
    wanted = set(namespaces)
    return lambda endpoint: ((not wanted or endpoint.pod.namespace in wanted)
                             and (matches is None or matches(endpoint.labels)))


def _keeps(cluster, test):
    if test is None:
        return None
    from tracer.policy.matrix import matrix_pods
    kept = {endpoint.key for endpoint in matrix_pods(cluster) if test(endpoint)}
    return kept.__contains__


def _compute(cluster, probe, engine: str, dataplane_flag: str | None = None):
    from tracer.commands.options import say_notes, use_engine
    from tracer.nft.mode import dataplane_of
    from tracer.policy.felix.versions import resolve_version
    from tracer.trace.assemble import build_dataplane
    from tracer.trace.matrix import dataplane_matrix

    version = resolve_version(cluster, None)
    if dataplane_of(cluster, dataplane_flag) == "nftables":
        from tracer.nft.plug import with_nftables
        dataplane, nft_notes = with_nftables(build_dataplane(cluster, version=version),
                                             version, engine)
        notes = lambda: nft_notes  # noqa: E731
    else:
        dataplane, notes = use_engine(build_dataplane(cluster, version=version), engine)
    say_notes(notes)
    return dataplane_matrix(dataplane, probe)


@contextlib.contextmanager
def _destination(path: str | None):
    if path is None:
        yield sys.stdout
        return
    with writing(path, "--out"), open(path, "w", encoding="utf-8", newline="") as out:
        yield out


def _write(result, output: str, out, out_path: str | None, *, ascii_only: bool, cluster,
           manifests: str, protocol: str, port: int) -> None:
    from tracer.policy import matrix_render

    if output in STREAMED:
        matrix_render.write_chunks(getattr(matrix_render, STREAMED[output])(result), out)
        if output == "json":
            out.write("\n")
    elif output == "summary":
        out.write(matrix_render.render_summary(result) + "\n")
    elif output == "html":
        from tracer.render.html_matrix import render_matrix_html
        traces = (pair_traces(cluster, result, protocol, port)
                  if len(result.pods) <= EMBED_TRACES_UP_TO else None)
        out.write(render_matrix_html(result, manifests=manifests, traces=traces))
    else:
        out.write(matrix_render.render_text(result, ascii_only=ascii_only) + "\n")


def pair_traces(cluster, result, protocol: str, port: int) -> dict[tuple[int, int], str]:
    """Every pair's summary trace through the dataplane, to embed in the heatmap page."""
    from tracer.explain import explain
    from tracer.policy.felix.versions import resolve_version
    from tracer.render.trace_text import render_text as render_trace
    from tracer.trace.assemble import build_dataplane
    from tracer.trace.tracing import TraceRequest, trace_packet

    dataplane = build_dataplane(cluster, version=resolve_version(cluster, None))
    texts = {}
    for i, src in enumerate(result.pods):
        for j, dst in enumerate(result.pods):
            if i == j:
                continue
            request = TraceRequest(src, dst, protocol=protocol.lower(),
                                   port=None if protocol.lower() == "icmp" else port)
            trace = explain(dataplane, trace_packet(dataplane, request))
            texts[i, j] = render_trace(trace, "summary")
    return texts
