"""``calico-trace verify``: prove the simulator's traces against the real kernel."""

from __future__ import annotations

import shutil

import click

from tracer.commands.options import engine_option, manifest_option, say_notes, use_engine
from tracer.errors import InputError
from tracer.kubeproxy.probe import SERVICE_PREFIX, is_service_ref, resolve_service
from tracer.judge.verify import Case, all_pairs, run_cases, service_cases
from tracer.model.loader import load_cluster
from tracer.policy.felix.versions import resolve_version
from tracer.trace.assemble import build_dataplane


@click.command()
@manifest_option
@click.option("--from", "sources", multiple=True, help="Source: NAMESPACE/POD, node:NAME (the "
              "node's own stack) or external (a host outside the cluster on the underlay); "
              "repeatable, paired with --to in order.")
@click.option("--to", "destinations", multiple=True,
              help="Destination: NAMESPACE/POD, node:NAME, external, or svc/NS/NAME[:PORT] "
              "(a Service's cluster IP; node:NAME with a NodePort as --port is its NodePort): "
              "the kernel's kube-proxy rules DNAT it and each backend it draws is judged.")
@click.option("--all-pairs", "every_pair", is_flag=True, help="Every ordered pair of pods.")
@click.option("--hosts", is_flag=True, help="With --all-pairs: also every node and the "
              "external host, to and from every pod (host-endpoint and NAT-outgoing paths).")
@click.option("--services", "every_service", is_flag=True, help="Every pod (with --hosts, "
              "every node) to every Service port's cluster IP and to every NodePort on every "
              "node (with --hosts, also from the external host), each backend judged.")
@click.option("--protocol", "protocols", multiple=True,
              type=click.Choice(["tcp", "udp", "icmp"]), help="Default: tcp and udp.")
@click.option("--port", "ports", multiple=True, type=click.IntRange(1, 65535),
              help="Destination port (repeatable; default 80).")
@click.option("--calico-version", help="Calico release whose felix rules to render.")
@click.option("--show", type=click.Choice(["differences", "all"]), default="differences",
              show_default=True, help="Which side-by-side traces to print.")
@engine_option("compiled")
@click.option("--dataplane", type=click.Choice(["iptables", "nftables"]), default=None,
              help="Judge felix's iptables tables (xtables-monitor) or its nftables table "
                   "(nft monitor); default: the FelixConfiguration's nftablesMode.")
def verify(paths, sources, destinations, every_pair, hosts, every_service, protocols, ports,
           calico_version, show, engine, dataplane=None) -> None:
    """Realise the cluster in network namespaces and check every trace against netfilter
    (the traces of the engine --engine names).

    Exit status 1 when any packet's trace or outcome differs.
    """
    if len(sources) != len(destinations):
        raise InputError("give --from and --to in pairs", obj="verify")
    if not sources and not every_pair and not every_service:
        raise InputError("name packets with --from/--to, or use --all-pairs or --services",
                         obj="verify")
    cluster = load_cluster(paths, calico_version=calico_version)
    from tracer.nft.mode import dataplane_of
    nftables = dataplane_of(cluster, dataplane) == "nftables"
    version = resolve_version(cluster, calico_version)
    if nftables:
        from tracer.nft.plug import ENGINE_FALLBACK
        built = build_dataplane(cluster, version=version)
        notes = (lambda: [ENGINE_FALLBACK]) if engine == "compiled" else (lambda: [])
    else:
        built, notes = use_engine(build_dataplane(cluster, version=version), engine)
    pairs = list(zip(sources, destinations))
    if every_pair:
        pairs += all_pairs(cluster, hosts=hosts)
    cases = [Case(src, dst, protocol, port)
             for src, dst in pairs
             for protocol in _protocols(cluster, dst, protocols)
             for port in _ports(dst, protocol, ports)]
    for case in cases:               # a bad svc/ reference fails here, before any namespace
        if is_service_ref(case.destination):
            if case.protocol == "icmp":
                raise InputError(f"{case.destination}: kube-proxy proxies TCP, UDP and SCTP "
                                 "only, not ICMP", obj="--protocol")
            resolve_service(cluster, case.destination, port=case.port, protocol=case.protocol)
    if every_service:
        if not cluster.services:
            raise InputError("--services: the manifests define no Service", obj="verify")
        cases += service_cases(cluster, hosts=hosts)
    if nftables and (every_service or any(is_service_ref(c.destination) for c in cases)):
        raise InputError("Service probes need kube-proxy's tables, which calico-trace models "
                         "in iptables mode only: use --dataplane iptables", obj="--dataplane")
    width = shutil.get_terminal_size((160, 20)).columns

    def report(result) -> None:
        what = result.case.describe() + (f" [{result.detail}]" if result.detail else "")
        if result.skipped:
            click.echo(f"  skip  {what}: {result.skipped}")
            return
        mark = "agree" if result.agree else "DIFF "
        outcome = result.simulated.verdict
        click.echo(f"  {mark} {what}: {outcome}")
        if show == "all" or not result.agree:
            click.echo(result.comparison.render(width))

    if nftables:
        from tracer.nft.judge import run_nft_cases
        results = run_nft_cases(built, version, cases, progress=report)
    else:
        results = run_cases(built, cases, progress=report)
    say_notes(notes)
    checked = [r for r in results if not r.skipped]
    differing = [r for r in checked if not r.agree]
    click.echo(f"\npackets checked: {len(checked)}, agreed: {len(checked) - len(differing)}, "
               f"differing: {len(differing)}, skipped: {len(results) - len(checked)}")
    if differing:
        raise click.exceptions.Exit(1)


def _protocols(cluster, destination: str, protocols: tuple[str, ...]) -> tuple[str, ...]:
    """--protocol, else TCP and UDP; for a Service, by default the protocols it serves."""
    if protocols:
        return protocols
    if is_service_ref(destination):
        key = destination[len(SERVICE_PREFIX):].partition(":")[0]
        service = cluster.services.get(key)
        if service is not None:
            served = {p.protocol.lower() for p in service.ports} & {"tcp", "udp"}
            return tuple(sorted(served)) or ("tcp",)
    return ("tcp", "udp")


def _ports(destination: str, protocol: str, ports: tuple[int, ...]) -> tuple[int | None, ...]:
    """The ports to probe: none for ICMP; for ``svc/NS/NAME:PORT`` the port it names (the
    Service port, whatever --port says); for ``svc/NS/NAME`` --port, or else its only port."""
    if protocol == "icmp":
        return (None,)
    if is_service_ref(destination):
        return (None,) if ":" in destination or not ports else ports
    return ports or (80,)
