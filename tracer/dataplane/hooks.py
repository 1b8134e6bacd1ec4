"""Netfilter hook order, mirroring the kernel's priorities (STYLE pattern 4).

    raw -300 < conntrack -200 < mangle -150 < nat(DNAT) -100 < filter 0 < nat(SNAT) 100
    < conntrack confirm (INT_MAX)

The nat table is consulted only for the first packet of a connection (ctstate NEW, or a
RELATED packet without a binding): later packets reuse the binding conntrack stored, exactly
as ``nf_nat_inet_fn`` does. Untracked packets (NOTRACK in raw) never see nat.
"""

from __future__ import annotations

from tracer.dataplane.ir import Table

HOOK_TABLES: dict[str, tuple[Table, ...]] = {
    "PREROUTING": (Table.RAW, Table.MANGLE, Table.NAT),
    "INPUT": (Table.MANGLE, Table.FILTER, Table.NAT),
    "FORWARD": (Table.MANGLE, Table.FILTER),
    "OUTPUT": (Table.RAW, Table.MANGLE, Table.NAT, Table.FILTER),
    "POSTROUTING": (Table.MANGLE, Table.NAT),
}

# Conntrack looks the packet up right after raw in PREROUTING and OUTPUT.
CONNTRACK_AFTER = {("PREROUTING", Table.RAW), ("OUTPUT", Table.RAW)}


def nat_applies(ctstate: str, nat_bound: bool) -> bool:
    """Whether the nat table's chains are evaluated for this packet."""
    return ctstate in ("NEW", "RELATED") and not nat_bound
