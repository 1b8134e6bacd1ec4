"""``calico-trace render``: one node's iptables tables (and ipsets) as felix programs them."""

from __future__ import annotations

import click

from tracer.commands.options import manifest_option

IPSET_SEPARATOR = "# ---- iptables-restore input follows (restore the ipsets above first) ----"


@click.command()
@manifest_option
@click.option("--node", required=True, help="Node whose dataplane to render.")
@click.option("--ipsets", "with_ipsets", is_flag=True,
              help="Print the `ipset save` text first (restore it before the tables).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="Write the node as a diags bundle's files instead: ipv4_tables "
                   "(iptables-restore), ipsets (ipset restore), ipv4_route, ipv4_addr, "
                   "hostname; --diags reads the folder back.")
@click.option("--calico-version", default=None,
              help="Calico release whose felix to mimic (3.29-3.32; default: the manifests' "
                   "FelixConfiguration, else the newest).")
@click.option("--dataplane", type=click.Choice(["iptables", "nftables"]), default=None,
              help="Render felix's iptables tables or its nftables table (nft -f input); "
                   "default: the FelixConfiguration's nftablesMode (Enabled: nftables).")
def render(paths: tuple[str, ...], node: str, with_ipsets: bool, out_dir: str | None,
           calico_version: str | None, dataplane: str | None) -> None:
    """Print NODE's raw/mangle/nat/filter tables in iptables-save format, loadable by
    iptables-restore as is, with felix's cali:<id> rule comments; with Services, kube-proxy's
    (iptables mode) chains beside felix's, hooked in the order the two install them."""
    from tracer.dataplane.ipsets import format_ipsets
    from tracer.dataplane.iptables_save import format_ruleset
    from tracer.errors import InputError
    from tracer.model.loader import load_cluster
    from tracer.policy.felix.versions import resolve_version
    from tracer.trace.assemble import build_dataplane

    cluster = load_cluster(list(paths), calico_version=calico_version)
    for warning in cluster.warnings:
        click.echo(f"warning: {warning}", err=True)
    if node not in cluster.nodes:
        raise InputError(f"no node {node!r} in the manifests (nodes: "
                         f"{', '.join(sorted(cluster.nodes)) or 'none'})", obj="--node")
    from tracer.nft.mode import dataplane_of
    if dataplane_of(cluster, dataplane) == "nftables":
        _render_nft(cluster, node, resolve_version(cluster, calico_version), out_dir)
        return
    dataplane_ = build_dataplane(cluster, version=resolve_version(cluster, calico_version))
    node_dp = dataplane_.nodes[node]
    ruleset = node_dp.ruleset
    if out_dir is not None:
        _write_bundle(out_dir, node_dp, cluster.nodes[node].address)
        return
    if with_ipsets:
        click.echo(format_ipsets(ruleset.ipsets), nl=False)
        click.echo(IPSET_SEPARATOR)
    click.echo(format_ruleset(ruleset), nl=False)


def _render_nft(cluster, node: str, version: str, out_dir: str | None) -> None:
    """felix's ``table ip calico`` (sets and verdict maps included) as ``nft -f`` input."""
    from tracer.errors import InputError
    from tracer.nft.text import format_nft
    from tracer.nft.translate import render_nft

    if out_dir is not None:
        raise InputError("--out writes an iptables diags bundle; it does not take "
                         "--dataplane nftables", obj="--out")
    click.echo(format_nft(render_nft(cluster, node, version=version)), nl=False)


def _write_bundle(out_dir: str, node_dp, underlay) -> None:
    from pathlib import Path

    from tracer.diags.write import bundle_files
    from tracer.errors import InputError

    folder = Path(out_dir)
    files = bundle_files(node_dp, underlay)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (folder / name).write_text(text)
    except OSError as err:
        raise InputError(f"cannot write: {err.strerror}", file=out_dir) from None
    click.echo(f"wrote {', '.join(sorted(files))} to {folder}", err=True)
