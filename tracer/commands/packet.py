"""``calico-trace packet``: trace one packet hop by hop and say why it lived or died."""

from __future__ import annotations

import sys

import click

from tracer.commands.dumps import (diags_option, load_diags, load_dumps, partial_option,
                                   say_node_warnings, table_option)
from tracer.commands.options import (cache_options, check_output_file, engine_option,
                                     load_for_command, say_notes, use_engine, writing)
from tracer.commands.stages import StageClock
from tracer.errors import InputError
from tracer.explain import explain
from tracer.kubeproxy.probe import is_service_ref
from tracer.policy.felix.versions import resolve_version
from tracer.render.forks import render_forks
from tracer.render.html_trace import render_trace_html, render_traces_html
from tracer.render.trace_json import render_json
from tracer.render.trace_text import VERBOSITIES, render_text
from tracer.trace.assemble import build_dataplane
from tracer.trace.forks import trace_forks
from tracer.trace.tracing import TraceRequest, build_probe, trace_packet


@click.command()
@click.option("-f", "--filename", "paths", multiple=True, type=click.Path(),
              help="Manifest file or directory (repeatable), as with kubectl apply -f; "
                   "optional with --diags.")
@diags_option
@cache_options
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
@click.option("--iptables-save", "dumps", multiple=True, metavar="[NODE=][TABLE:]FILE",
              help="Use a real node's iptables-save (or iptables -S) dump instead of the "
                   "rendered ruleset (default node: where the packet first enters).")
@partial_option
@table_option
@click.option("--ipsets", "ipset_dumps", multiple=True, metavar="[NODE=]FILE",
              help="The ipset save/list output that goes with --iptables-save.")
@click.option("--write-pcap", "pcap_path", type=click.Path(),
              help="Write the packet at each point of its path (source, underlay with its "
                   "framing, destination) to this pcap file.")
@engine_option("reference")
@click.option("--dataplane", type=click.Choice(["iptables", "nftables"]), default=None,
              help="Trace through felix's iptables tables or its nftables table (nftables "
                   "semantics); default: the FelixConfiguration's nftablesMode.")
@click.option("--nft-ruleset", "nft_listings", multiple=True, metavar="[NODE=]FILE",
              help="A real node's `nft [-a] list ruleset` (felix's table ip calico) instead "
                   "of the rendered nftables table (default node: where the packet first "
                   "enters); implies --dataplane nftables.")
def packet(paths, diags, cache_dir, no_cache, verbose, source, destination, endpoint, protocol,
           port, sport, state, size, icmp_type, icmp_code, reply, tcp_flags, output, verbosity,
           calico_version, dumps, partial, table, ipset_dumps, pcap_path, engine,
           dataplane=None, nft_listings=()) -> None:
    """Trace one packet from --from to --to through every node's Calico dataplane."""
    check_output_file(pcap_path, "--write-pcap")
    if ipset_dumps and not dumps:
        raise InputError("--ipsets goes with --iptables-save (the ipsets of a real node's "
                         "dump); the rendered ruleset brings its own", obj="--ipsets")
    if not paths and not diags:
        raise InputError("give the cluster's manifests (-f) or a node's diags bundle (--diags)",
                         obj="packet")
    clock = StageClock(verbose=verbose)
    prepared = cluster = None
    if paths:
        prepared = load_for_command(paths, calico_version=calico_version, cache_dir=cache_dir,
                                    no_cache=no_cache, clock=clock)
        cluster = prepared.cluster
    built = {}
    if diags:
        with clock.stage("read diags bundles"):
            cluster, built = load_diags(diags, cluster, partial=partial)
    for warning in cluster.warnings:
        click.echo(f"warning: {warning}", err=True)
    version = resolve_version(cluster, calico_version)
    request = TraceRequest(source=source, destination=destination, protocol=protocol,
                           port=port, sport=sport, state=state, size=size, icmp_type=icmp_type,
                           icmp_code=icmp_code, reply=reply, tcp_flags=tcp_flags)
    if dumps:
        if diags:
            raise InputError("--iptables-save and --diags both give a node's rules: use one",
                             obj="--iptables-save")
        first_node = build_probe(build_dataplane(cluster, version=version, prepared=prepared),
                                 request)[0].node
        built = {"rulesets": load_dumps(dumps, ipset_dumps, default_node=first_node,
                                        nodes=set(cluster.nodes), partial=partial,
                                        table=table)}
    from tracer.nft.mode import dataplane_of
    if nft_listings and dataplane == "iptables":
        raise InputError("--nft-ruleset is an nftables listing: it goes with --dataplane "
                         "nftables", obj="--nft-ruleset")
    nftables = bool(nft_listings) or dataplane_of(cluster, dataplane) == "nftables"
    if nftables and (dumps or diags or is_service_ref(destination)):
        raise InputError("--dataplane nftables traces felix's rendered nftables table: real "
                         "dumps and Services (kube-proxy's table) are not modelled in it",
                         obj="--dataplane")
    with clock.stage("engine"):
        built_dp = build_dataplane(cluster, version=version, prepared=prepared, **built)
        if nftables:
            from tracer.nft.plug import read_listings, with_nftables
            listings, skipped = {}, []
            if nft_listings:
                listings, skipped = read_listings(
                    nft_listings, default_node=build_probe(built_dp, request)[0].node,
                    nodes=set(cluster.nodes))
            dataplane, nft_notes = with_nftables(built_dp, version, engine, listings)
            nft_notes += skipped
            notes = lambda: nft_notes  # noqa: E731
        else:
            dataplane, notes = use_engine(built_dp, engine)
    if is_service_ref(destination):             # kube-proxy's random pick forks the trace
        with clock.stage("trace (nodes built lazily)"):
            forks = [fork.with_trace(explain(dataplane, fork.trace))
                     for fork in trace_forks(dataplane, request, endpoint)]
        with clock.stage("render"):
            if output == "html":
                text = render_traces_html([(f.header().strip("= "), f.trace) for f in forks],
                                          cluster, f"{source} -> {destination}")
            else:
                text = render_forks(forks, output, verbosity)
        if pcap_path:
            _write_pcap(pcap_path, forks[0].trace)
    elif endpoint is not None:
        raise InputError("--endpoint needs --to svc/NAMESPACE/NAME", obj="--endpoint")
    else:
        with clock.stage("trace (nodes built lazily)"):
            traced = trace_packet(dataplane, request)
        with clock.stage("explain"):
            trace = explain(dataplane, traced)
        with clock.stage("render"):
            text = (render_json(trace) if output == "json" else
                    render_trace_html(trace, cluster) if output == "html" else
                    render_text(trace, verbosity))
        if pcap_path:
            _write_pcap(pcap_path, trace)
    say_node_warnings(dataplane)
    say_notes(notes)
    clock.note(f"nodes built: {', '.join(dataplane.nodes.built) or 'none'} "
               f"of {len(dataplane.nodes)}")
    click.echo(text, nl=False)
    sys.stdout.flush()
    clock.report()


def _write_pcap(path: str, trace) -> None:
    # Imported here: the capture writer's modules take longer to import than a small trace.
    from tracer.render.trace_pcap import write_trace_pcap
    with writing(path, "--write-pcap"):
        write_trace_pcap(path, trace)
