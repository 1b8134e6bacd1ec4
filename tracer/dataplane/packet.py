"""The packet a trace follows: header fields only, named as the kernel names them.

Bytes are produced at the edges (pcap writer, TUN, encapsulation); the pipeline works on this
record so that a trace and a batch of a million packets share one representation.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from ipaddress import IPv4Address

from tracer.protocols import (ACK, FIN, ICMP, ICMP_ECHO_REQUEST, PORTED, PSH, RST, SCTP, SYN, TCP,
                              UDP, display_name)

# The protocols a probe can be built for (--protocol).
PROBE_PROTOCOLS = {"tcp": TCP, "udp": UDP, "icmp": ICMP, "sctp": SCTP}


@dataclass(frozen=True)
class Packet:
    src: IPv4Address
    dst: IPv4Address
    protocol: int
    sport: int | None = None
    dport: int | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None
    tcp_flags: int | None = None
    ttl: int = 64
    length: int = 60                   # IP total length in bytes
    df: bool = True                    # sockets default to IP_PMTUDISC_WANT: DF set
    seq: int = 0                       # TCP sequence / acknowledgement numbers and window,
    ack_seq: int = 0                   # which conntrack's window tracking reads
    window: int = 64240
    payload_len: int = 0
    icmp_id: int = 0                   # ICMP echo identifier (conntrack's key for echo)
    inner: "Packet | None" = None      # tunnel payload (IPIP, VXLAN, WireGuard) or the packet an
                                       # ICMP error quotes
    wscale: int | None = None          # a TCP SYN's window-scale option (conntrack reads it)

    def with_(self, **changes) -> "Packet":
        return replace(self, **changes)

    @property
    def protocol_name(self) -> str:
        return display_name(self.protocol)

    def describe(self) -> str:
        name = self.protocol_name
        if self.protocol in PORTED:
            text = f"{name} {self.src}:{self.sport} -> {self.dst}:{self.dport}"
            if self.protocol == TCP and self.tcp_flags is not None:
                text += f" [{tcp_flag_names(self.tcp_flags)}]"
            return text
        if self.protocol == ICMP:
            return f"ICMP {self.src} -> {self.dst} type {self.icmp_type} code {self.icmp_code}"
        return f"{name} {self.src} -> {self.dst}"


def tcp_flag_names(flags: int) -> str:
    names = [(SYN, "SYN"), (ACK, "ACK"), (FIN, "FIN"), (RST, "RST"), (PSH, "PSH")]
    return ",".join(name for bit, name in names if flags & bit) or "none"


def make_packet(src: IPv4Address, dst: IPv4Address, protocol: int, *, dport: int | None = None,
                sport: int | None = None, length: int | None = None,
                icmp_type: int = ICMP_ECHO_REQUEST, icmp_code: int = 0) -> Packet:
    """A probe as a real client opens a connection: a TCP SYN, a UDP datagram, an ICMP echo
    request (or the ICMP type and code asked for)."""
    if protocol == TCP:
        return Packet(src, dst, TCP, sport=sport or 40000, dport=dport or 80, tcp_flags=SYN,
                      seq=1000, length=length or 40)
    if protocol in PORTED:
        return Packet(src, dst, protocol, sport=sport or 40000, dport=dport or 53,
                      length=length or 60)
    if protocol == ICMP:
        return Packet(src, dst, ICMP, icmp_type=icmp_type, icmp_code=icmp_code, icmp_id=7,
                      length=length or 84)
    return Packet(src, dst, protocol, length=length or 60)
