"""``calico-trace matrix``: which pods may connect to which, for one protocol and port."""

from __future__ import annotations

import click

from tracer.commands.options import manifest_option


@click.command()
@manifest_option
@click.option("--protocol", type=click.Choice(["tcp", "udp", "sctp", "icmp"],
                                              case_sensitive=False),
              default="tcp", show_default=True, help="Protocol of the probe connection.")
@click.option("--port", type=click.IntRange(1, 65535), default=80, show_default=True,
              help="Destination port (ignored for icmp, which probes with an echo request).")
@click.option("--output", "-o", type=click.Choice(["text", "json", "csv"]), default="text",
              show_default=True, help="Output format.")
@click.option("--ascii", "ascii_only", is_flag=True,
              help="Text grid with Y/. instead of \u2713/\u2717.")
def matrix(paths: tuple[str, ...], protocol: str, port: int, output: str,
           ascii_only: bool) -> None:
    """Pod-to-pod reachability under Calico policy (egress of the source AND ingress of the
    destination), for every ordered pair of pods; a pod to itself is always allowed."""
    from tracer.model.loader import load_cluster
    from tracer.policy.matrix import Probe, compute_matrix
    from tracer.policy.matrix_render import render_csv, render_json, render_text

    cluster = load_cluster(list(paths))
    result = compute_matrix(cluster, Probe.make(protocol, port))
    if output == "json":
        click.echo(render_json(result))
    elif output == "csv":
        click.echo(render_csv(result), nl=False)
    else:
        click.echo(render_text(result, ascii_only=ascii_only))
