"""Put felix's nftables tables under a dataplane's pipeline (``--dataplane nftables``)."""

from __future__ import annotations

from tracer.nft.translate import render_nft
from tracer.nft.walk import NftTables

ENGINE_FALLBACK = ("the compiled engine has no nftables kernels: nftables tables run on the "
                   "reference walker (tracer.nft.walk)")


def with_nftables(dataplane, version: str, engine: str):
    """``dataplane`` whose netfilter tables are each node's felix nftables table, walked with
    nftables' semantics; and the notes to say (the compiled engine falls back)."""
    cluster = dataplane.cluster
    runner = NftTables(lambda node: render_nft(cluster, node, version=version).tables[0])
    notes = [ENGINE_FALLBACK] if engine == "compiled" else []
    if cluster.services:
        notes.append("kube-proxy's rules are not part of the nftables model (its own "
                      "nftables table is not rendered): Service traffic is not translated")
    return dataplane.with_tables(runner), notes
