"""Protocol numbers, names and header bits: the one place these facts are declared.

Numbers are IANA's (``/etc/protocols``), flag bits are the TCP header's, ICMP types RFC 792's.
Every layer (model, policy, dataplane, conntrack, encap, capture) reads them from here.
"""

from __future__ import annotations

ICMP, IGMP, IPIP, TCP, UDP, GRE, ESP, AH, ICMPV6, SCTP, UDPLITE = (
    1, 2, 4, 6, 17, 47, 50, 51, 58, 132, 136)

# The names iptables and Calico policies accept, lower case, to their numbers. ``ipencap`` and
# ``ipv4`` are other spellings of IP-in-IP (4) seen in real dumps.
PROTOCOL_NUMBERS: dict[str, int] = {
    "icmp": ICMP, "igmp": IGMP, "ipencap": IPIP, "ipv4": IPIP, "tcp": TCP, "udp": UDP,
    "gre": GRE, "esp": ESP, "ah": AH, "icmpv6": ICMPV6, "ipv6-icmp": ICMPV6, "sctp": SCTP,
    "udplite": UDPLITE,
}
# Number to the name iptables-save prints.
PROTOCOL_NAMES: dict[int, str] = {
    ICMP: "icmp", IGMP: "igmp", TCP: "tcp", UDP: "udp", GRE: "gre", ESP: "esp", AH: "ah",
    ICMPV6: "ipv6-icmp", SCTP: "sctp", UDPLITE: "udplite",
}
# Protocols Calico policy rules may name (projectcalico.org/v3 numorstring.Protocol).
CALICO_PROTOCOLS: dict[str, int] = {
    "tcp": TCP, "udp": UDP, "icmp": ICMP, "icmpv6": ICMPV6, "sctp": SCTP, "udplite": UDPLITE,
}
# Protocols whose header carries 16-bit ports at offsets 0 and 2 (ip_set_get_ip4_port, xt_tcpudp,
# conntrack's generic port tuple).
PORTED = frozenset({TCP, UDP, SCTP, UDPLITE})

# Display names in traces.
DISPLAY_NAMES: dict[int, str] = {TCP: "TCP", UDP: "UDP", ICMP: "ICMP", SCTP: "SCTP",
                                 IPIP: "IPIP", UDPLITE: "UDPLite", ICMPV6: "ICMPv6"}

# TCP header flag bits (libxt_tcp knows these six).
FIN, SYN, RST, PSH, ACK, URG = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
TCP_FLAG_BITS: dict[str, int] = {"FIN": FIN, "SYN": SYN, "RST": RST, "PSH": PSH, "ACK": ACK,
                                 "URG": URG}

# ICMP types (RFC 792).
ICMP_ECHO_REPLY, ICMP_DEST_UNREACH, ICMP_ECHO_REQUEST, ICMP_TIME_EXCEEDED = 0, 3, 8, 11
ICMP_FRAG_NEEDED = 4              # code of DEST_UNREACH
ICMP_PORT_UNREACH = 3             # code of DEST_UNREACH

# Well-known UDP ports of the tunnels felix programs (defaults; FelixConfiguration overrides).
VXLAN_DEFAULT_PORT = 4789
WIREGUARD_DEFAULT_PORT = 51820


def protocol_number(name_or_number: str | int) -> int | None:
    """``"tcp"`` / ``"TCP"`` / ``6`` / ``"6"`` -> 6; None when unknown."""
    if isinstance(name_or_number, int):
        return name_or_number if 0 <= name_or_number <= 255 else None
    text = name_or_number.strip().lower()
    if text.isdigit():
        number = int(text)
        return number if number <= 255 else None
    return PROTOCOL_NUMBERS.get(text)


def display_name(number: int) -> str:
    return DISPLAY_NAMES.get(number, str(number))
