"""``conntrack -L`` text for a list of entries, byte for byte as conntrack-tools 1.4.7 prints it.

Line shape (checked against the real tool in tests/test_conntrack_kernel.py)::

    tcp      6 431999 ESTABLISHED src=A dst=B sport=P dport=Q src=B dst=A sport=Q dport=P [ASSURED] mark=0 use=1
    udp      17 29 src=A dst=B sport=P dport=Q [UNREPLIED] src=B dst=A sport=Q dport=P mark=0 use=1
    icmp     1 29 src=A dst=B type=8 code=0 id=7 src=B dst=A type=0 code=0 id=7 mark=0 use=1

The timeout column is whole seconds left, rounded down (the kernel prints jiffies / HZ);
``use`` is printed as 1, the refcount of an idle entry.
"""

from __future__ import annotations

import math

from tracer.conntrack.tuples import IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, Entry, FlowTuple, ip_str

_PROTO_NAMES = {IPPROTO_TCP: "tcp", IPPROTO_UDP: "udp", IPPROTO_ICMP: "icmp"}


def format_tuple(flow: FlowTuple) -> str:
    text = f"src={ip_str(flow.src)} dst={ip_str(flow.dst)} "
    if flow.protocol == IPPROTO_ICMP:
        return text + f"type={flow.icmp_type} code={flow.icmp_code} id={flow.sport} "
    if flow.protocol in (IPPROTO_TCP, IPPROTO_UDP):
        return text + f"sport={flow.sport} dport={flow.dport} "
    return text


def format_entry(entry: Entry, now: float) -> str:
    proto = entry.original.protocol
    left = max(0, math.floor(entry.expires - now))
    line = f"{_PROTO_NAMES.get(proto, 'unknown'):<8} {proto} {left} "
    if entry.tcp_state is not None:
        line += f"{entry.tcp_state} "
    line += format_tuple(entry.original)
    if "SEEN_REPLY" not in entry.status:
        line += "[UNREPLIED] "
    line += format_tuple(entry.reply)
    if "ASSURED" in entry.status:
        line += "[ASSURED] "
    return line + f"mark={entry.mark} use=1"


def format_conntrack_list(entries: list[Entry], now: float) -> str:
    """One ``conntrack -L`` line per entry, newline-terminated (empty string for no entries)."""
    return "".join(format_entry(entry, now) + "\n" for entry in entries)
