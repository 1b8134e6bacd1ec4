"""``calico-trace verify``: prove the simulator's traces against the real kernel."""

from __future__ import annotations

import shutil

import click

from tracer.commands.options import engine_option, manifest_option, say_notes, use_engine
from tracer.errors import InputError
from tracer.judge.verify import Case, all_pairs, run_cases
from tracer.model.loader import load_cluster
from tracer.policy.felix.versions import resolve_version
from tracer.trace.assemble import build_dataplane


@click.command()
@manifest_option
@click.option("--from", "sources", multiple=True, help="Source: NAMESPACE/POD, node:NAME (the "
              "node's own stack) or external (a host outside the cluster on the underlay); "
              "repeatable, paired with --to in order.")
@click.option("--to", "destinations", multiple=True,
              help="Destination: NAMESPACE/POD, node:NAME or external.")
@click.option("--all-pairs", "every_pair", is_flag=True, help="Every ordered pair of pods.")
@click.option("--hosts", is_flag=True, help="With --all-pairs: also every node and the "
              "external host, to and from every pod (host-endpoint and NAT-outgoing paths).")
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
def verify(paths, sources, destinations, every_pair, hosts, protocols, ports, calico_version,
           show, engine, dataplane=None) -> None:
    """Realise the cluster in network namespaces and check every trace against netfilter
    (the traces of the engine --engine names).

    Exit status 1 when any packet's trace or outcome differs.
    """
    if len(sources) != len(destinations):
        raise InputError("give --from and --to in pairs", obj="verify")
    if not sources and not every_pair:
        raise InputError("name packets with --from/--to, or use --all-pairs", obj="verify")
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
    cases = [Case(src, dst, protocol, None if protocol == "icmp" else port)
             for src, dst in pairs
             for protocol in (protocols or ("tcp", "udp"))
             for port in ((ports or (80,)) if protocol != "icmp" else (None,))]
    width = shutil.get_terminal_size((160, 20)).columns

    def report(result) -> None:
        if result.skipped:
            click.echo(f"  skip  {result.case.describe()}: {result.skipped}")
            return
        mark = "agree" if result.agree else "DIFF "
        outcome = result.simulated.verdict
        click.echo(f"  {mark} {result.case.describe()}: {outcome}")
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
