"""Put felix's nftables tables under a dataplane's pipeline (``--dataplane nftables``)."""

from __future__ import annotations

from tracer.nft.translate import render_nft
from tracer.nft.walk import CompiledTable, NftTables

ENGINE_FALLBACK = ("the compiled engine has no nftables kernels: nftables tables run on the "
                   "reference walker (tracer.nft.walk)")


def with_nftables(dataplane, version: str, engine: str,
                  listings: dict[str, CompiledTable] | None = None):
    """``dataplane`` whose netfilter tables are each node's felix nftables table, walked with
    nftables' semantics; and the notes to say (the compiled engine falls back).
    ``listings``: nodes whose table is read from their ``nft list ruleset`` instead."""
    cluster = dataplane.cluster
    listings = listings or {}

    def table_of(node: str):
        found = listings.get(node)
        return found if found is not None else render_nft(cluster, node,
                                                          version=version).tables[0]
    runner = NftTables(table_of)
    notes = [ENGINE_FALLBACK] if engine == "compiled" else []
    if cluster.services:
        notes.append("kube-proxy's rules are not part of the nftables model (its own "
                      "nftables table is not rendered): Service traffic is not translated")
    return dataplane.with_tables(runner), notes


def read_listings(specs, *, default_node: str, nodes: set[str]) -> tuple[dict, list[str]]:
    """``[NODE=]FILE`` of ``nft [-a] list ruleset`` -> node -> table ready to walk, and what
    was left out of each listing (other tables)."""
    from tracer.commands.dumps import read, split_spec
    from tracer.errors import InputError
    from tracer.nft.listing import parse_listing

    out, notes = {}, []
    for spec in specs:
        node, path, _ = split_spec(spec, default_node)
        if node not in nodes:
            raise InputError(f"no node {node!r} in the cluster", file=path, obj="--nft-ruleset")
        table, handles, skipped = parse_listing(read(path), path)
        out[node] = CompiledTable(table, handles or None)
        notes += [f"{path}: {note}" for note in skipped]
    return out, notes
