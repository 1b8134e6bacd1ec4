"""``calico-trace matrix``: which pods may connect to which, for one protocol and port."""

from __future__ import annotations

import shlex

import click

from tracer.commands.options import manifest_option

# Up to this many pods, the HTML page embeds every pair's trace (traced through the
# dataplane); above it, a cell shows the command that traces the pair.
EMBED_TRACES_UP_TO = 20


@click.command()
@manifest_option
@click.option("--protocol", type=click.Choice(["tcp", "udp", "sctp", "icmp"],
                                              case_sensitive=False),
              default="tcp", show_default=True, help="Protocol of the probe connection.")
@click.option("--port", type=click.IntRange(1, 65535), default=80, show_default=True,
              help="Destination port (ignored for icmp, which probes with an echo request).")
@click.option("--output", "-o", type=click.Choice(["text", "json", "csv", "html"]),
              default="text", show_default=True,
              help="Output format (html: a heatmap page grouped by namespace).")
@click.option("--ascii", "ascii_only", is_flag=True,
              help="Text grid with Y/. instead of \u2713/\u2717.")
@click.option("--plot", "plot_path", metavar="FILE.png|FILE.svg",
              help="Also draw the heatmap to this image file.")
@click.option("--engine", type=click.Choice(["policy", "compiled", "reference"]),
              default="policy", show_default=True,
              help="policy: evaluate the policies directly (set-based, fastest); compiled / "
                   "reference: trace one packet per pair through the rendered dataplane on "
                   "that engine (sees everything the rules and the packet path do).")
def matrix(paths: tuple[str, ...], protocol: str, port: int, output: str,
           ascii_only: bool, plot_path: str | None, engine: str) -> None:
    """Pod-to-pod reachability under Calico policy (egress of the source AND ingress of the
    destination), for every ordered pair of pods; a pod to itself is always allowed."""
    from tracer.model.loader import load_cluster
    from tracer.policy.matrix import Probe, compute_matrix
    from tracer.policy.matrix_render import render_csv, render_json, render_text

    cluster = load_cluster(list(paths))
    probe = Probe.make(protocol, port)
    if engine == "policy":
        result = compute_matrix(cluster, probe)
    else:
        from tracer.commands.options import say_notes, use_engine
        from tracer.policy.felix.versions import resolve_version
        from tracer.trace.assemble import build_dataplane
        from tracer.trace.matrix import dataplane_matrix

        dataplane, notes = use_engine(build_dataplane(cluster, version=resolve_version(
            cluster, None)), engine)
        result = dataplane_matrix(dataplane, probe)
        say_notes(notes)
    if plot_path:
        from tracer.render.matrix_plot import plot_matrix
        plot_matrix(result, plot_path)
    if output == "json":
        click.echo(render_json(result))
    elif output == "csv":
        click.echo(render_csv(result), nl=False)
    elif output == "html":
        from tracer.render.html_matrix import render_matrix_html
        manifests = " ".join(f"-f {shlex.quote(str(p))}" for p in paths)
        traces = (pair_traces(cluster, result, protocol, port)
                  if len(result.pods) <= EMBED_TRACES_UP_TO else None)
        click.echo(render_matrix_html(result, manifests=manifests, traces=traces), nl=False)
    else:
        click.echo(render_text(result, ascii_only=ascii_only))


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
