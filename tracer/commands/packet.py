"""``calico-trace packet``: trace one packet hop by hop and say why it lived or died."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from tracer.commands.options import manifest_option
from tracer.dataplane.ipsets import parse_ipsets
from tracer.dataplane.iptables_save import parse_ruleset
from tracer.errors import InputError
from tracer.explain import explain
from tracer.kubeproxy.probe import is_service_ref
from tracer.model.loader import load_cluster
from tracer.policy.felix.versions import resolve_version
from tracer.render.forks import render_forks
from tracer.render.html_trace import render_trace_html, render_traces_html
from tracer.render.trace_json import render_json
from tracer.render.trace_pcap import write_trace_pcap
from tracer.render.trace_text import VERBOSITIES, render_text
from tracer.trace.assemble import build_dataplane
from tracer.trace.forks import trace_forks
from tracer.trace.tracing import TraceRequest, build_probe, trace_packet


@click.command()
@manifest_option
@click.option("--from", "source", required=True, help="NAMESPACE/POD or an IPv4 address.")
@click.option("--to", "destination", required=True,
              help="NAMESPACE/POD, an IPv4 address, or svc/NAMESPACE/NAME[:PORT].")
@click.option("--endpoint", help="With --to svc/...: the backend kube-proxy picks (1-based "
              "position in its KUBE-SVC chain, or NAMESPACE/POD); default: every backend.")
@click.option("--protocol", type=click.Choice(["tcp", "udp", "sctp", "icmp"],
              case_sensitive=False), default="tcp", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), help="Destination port.")
@click.option("--sport", type=click.IntRange(1, 65535), help="Source port (default 40000).")
@click.option("--state", type=click.Choice(["new", "established"]), default="new",
              show_default=True, help="new: the connection's first packet; established: open "
              "the connection first (through every node's conntrack), then trace the next "
              "packet.")
@click.option("--size", type=click.IntRange(28, 65535), help="IP packet length in bytes.")
@click.option("--icmp-type", type=click.IntRange(0, 255),
              help="With --protocol icmp: the ICMP type (default 8, echo request).")
@click.option("--icmp-code", type=click.IntRange(0, 255),
              help="With --protocol icmp: the ICMP code (default 0).")
@click.option("--reply", is_flag=True, help="Send the packet, then trace the answer its "
              "receiver sends back (SYN-ACK, UDP reply, echo reply): for \"the request arrives "
              "but the answer never comes back\".")
@click.option("--tcp-flags", help="With --protocol tcp: send a packet with these flags "
              "(e.g. ACK, SYN,ACK) instead of a SYN, as a stray packet with no connection.")
@click.option("--output", type=click.Choice(["text", "json", "html"]), default="text",
              show_default=True, help="html: one self-contained page on standard output "
              "(path diagram, rules per hop, the deciding policy's YAML).")
@click.option("--verbosity", type=click.Choice(VERBOSITIES), default="detailed",
              show_default=True)
@click.option("--calico-version", help="Calico release whose felix rules to render.")
@click.option("--iptables-save", "dumps", multiple=True, metavar="[NODE=]FILE",
              help="Use a real node's iptables-save dump instead of the rendered ruleset "
                   "(default node: where the packet first enters).")
@click.option("--ipsets", "ipset_dumps", multiple=True, metavar="[NODE=]FILE",
              help="The ipset save/list output that goes with --iptables-save.")
@click.option("--write-pcap", "pcap_path", type=click.Path(dir_okay=False, writable=True),
              help="Write the packet at each point of its path (source, underlay with its "
                   "framing, destination) to this pcap file.")
def packet(paths, source, destination, endpoint, protocol, port, sport, state, size, icmp_type,
           icmp_code, reply, tcp_flags, output, verbosity, calico_version, dumps, ipset_dumps,
           pcap_path) -> None:
    """Trace one packet from --from to --to through every node's Calico dataplane."""
    cluster = load_cluster(paths, calico_version=calico_version)
    for warning in cluster.warnings:
        click.echo(f"warning: {warning}", err=True)
    version = resolve_version(cluster, calico_version)
    request = TraceRequest(source=source, destination=destination, protocol=protocol,
                           port=port, sport=sport, state=state, size=size, icmp_type=icmp_type,
                           icmp_code=icmp_code, reply=reply, tcp_flags=tcp_flags)
    rulesets = {}
    if dumps:
        first_node = build_probe(build_dataplane(cluster, version=version), request)[0].node
        rulesets = load_dumps(dumps, ipset_dumps, default_node=first_node,
                              nodes=set(cluster.nodes))
    dataplane = build_dataplane(cluster, version=version, rulesets=rulesets)
    if is_service_ref(destination):             # kube-proxy's random pick forks the trace
        forks = [fork.with_trace(explain(dataplane, fork.trace))
                 for fork in trace_forks(dataplane, request, endpoint)]
        if output == "html":
            text = render_traces_html([(f.header().strip("= "), f.trace) for f in forks],
                                      cluster, f"{source} -> {destination}")
        else:
            text = render_forks(forks, output, verbosity)
        if pcap_path:
            write_trace_pcap(pcap_path, forks[0].trace)
    elif endpoint is not None:
        raise InputError("--endpoint needs --to svc/NAMESPACE/NAME", obj="--endpoint")
    else:
        trace = explain(dataplane, trace_packet(dataplane, request))
        text = (render_json(trace) if output == "json" else
                render_trace_html(trace, cluster) if output == "html" else
                render_text(trace, verbosity))
        if pcap_path:
            write_trace_pcap(pcap_path, trace)
    click.echo(text, nl=False)
    sys.stdout.flush()


def _split(spec: str, default_node: str) -> tuple[str, str]:
    node, sep, path = spec.partition("=")
    return (node, path) if sep and not Path(spec).exists() else (default_node, spec)


def load_dumps(dumps, ipset_dumps, *, default_node: str, nodes: set[str]):
    ipsets_by_node = {}
    for spec in ipset_dumps:
        node, path = _split(spec, default_node)
        ipsets_by_node[node] = parse_ipsets(_read(path), filename=path)
    rulesets = {}
    for spec in dumps:
        node, path = _split(spec, default_node)
        if node not in nodes:
            raise InputError(f"no node {node!r} in the cluster", file=path,
                             obj="--iptables-save")
        ruleset = parse_ruleset(_read(path), filename=path, ipsets=ipsets_by_node.get(node, {}))
        rulesets[node] = (ruleset, f"iptables-save dump {path}")
    return rulesets


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError as err:
        raise InputError(f"cannot read: {err.strerror}", file=path) from None
