"""``calico-trace conntrack``: open connections through the dataplane and print each node's
connection-tracking table as ``conntrack -L`` would show it on that node."""

from __future__ import annotations

import math

import click

from tracer.commands.options import manifest_option
from tracer.conntrack.format import format_conntrack_list
from tracer.trace.assemble import build_dataplane
from tracer.errors import InputError, quote
from tracer.model.loader import load_cluster
from tracer.trace.session import Session
from tracer.trace.tracing import TraceRequest, build_probe, locate
from tracer.policy.felix.versions import resolve_version


PROTOCOLS = ("tcp", "udp", "sctp", "icmp")


def parse_connection(spec: str) -> TraceRequest:
    """``FROM,TO,PROTO[/PORT]``, e.g. ``myns/frontend,myns/backend,tcp/6379``."""
    parts = spec.split(",")
    if len(parts) != 3 or not all(p.strip() for p in parts):
        raise InputError(f"{quote(spec)}: expected FROM,TO,PROTOCOL[/PORT]", obj="--connect")
    source, destination, proto = (p.strip() for p in parts)
    protocol, _, port = proto.partition("/")
    if protocol.lower() not in PROTOCOLS:
        raise InputError(f"{quote(spec)}: protocol {quote(protocol)} is not one of "
                         f"{', '.join(PROTOCOLS)}", obj="--connect")
    if port and not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        raise InputError(f"{quote(spec)}: port {quote(port)} is not a number 1-65535",
                         obj="--connect")
    return TraceRequest(source, destination, protocol=protocol.lower(),
                        port=int(port) if port else None)


@click.command()
@manifest_option
@click.option("--connect", "connections", multiple=True, required=True,
              metavar="FROM,TO,PROTO[/PORT]", help="A connection to open (repeatable).")
@click.option("--close", is_flag=True, help="Close TCP connections again (FIN/ACK exchange).")
@click.option("--node", "nodes", multiple=True, help="Only these nodes' tables.")
@click.option("--wait", type=click.FloatRange(0, 10**9), default=0.0, show_default=True,
              help="Seconds to let pass before listing (entries age and expire).")
@click.option("--tcp-loose/--no-tcp-loose", default=True, show_default=True,
              help="net.netfilter.nf_conntrack_tcp_loose on the nodes.")
@click.option("--calico-version", help="Calico release whose felix rules to render.")
def conntrack(paths, connections, close, nodes, wait, tcp_loose, calico_version) -> None:
    """Open connections (handshake, request/reply) and list every node's conntrack table."""
    requests = [parse_connection(spec) for spec in connections]     # all checked up front
    if math.isnan(wait):
        raise InputError("expected a number of seconds, got nan", obj="--wait")
    cluster = load_cluster(paths, calico_version=calico_version)
    for warning in cluster.warnings:
        click.echo(f"warning: {warning}", err=True)
    dataplane = build_dataplane(cluster, version=resolve_version(cluster, calico_version))
    unknown = set(nodes) - set(dataplane.nodes)
    if unknown:
        raise InputError(f"no node {quote(sorted(unknown)[0])} in the cluster", obj="--node")
    probes = [build_probe(dataplane, request)[0] for request in requests]
    session = Session(dataplane, tcp_loose=tcp_loose)
    for spec, probe in zip(connections, probes):
        where = lambda packet: locate(cluster, packet)  # noqa: E731
        exchange, data = session.open(probe, locate=where)
        click.echo(f"# {spec}: {exchange.summary()}", err=True)
        if close and exchange.completed and probe.packet.protocol == 6:
            closing = session.close(data, locate=where)
            click.echo(f"# {spec} closed: {closing.summary()}", err=True)
    session.advance(wait)
    for name in sorted(nodes or dataplane.nodes):
        entries = session.state.conntrack(name).entries(session.now)
        click.echo(f"# node {name}: {len(entries)} flow entries")
        text = format_conntrack_list(entries, session.now)
        click.echo(text, nl=bool(text) and not text.endswith("\n"))
