"""Conntrack timeouts in seconds, defaulting to the kernel's (``net.netfilter.nf_conntrack_*``).

Values from ``tcp_timeouts[]`` (nf_conntrack_proto_tcp.c), ``udp_timeouts[]``
(nf_conntrack_proto_udp.c), ``nf_ct_icmp_timeout`` and the generic tracker (600 s).
"""

from __future__ import annotations

from dataclasses import dataclass

# Index order of the kernel's enum tcp_conntrack (then RETRANS, UNACK).
TCP_TIMEOUT_FIELDS = ("tcp_none", "tcp_syn_sent", "tcp_syn_recv", "tcp_established",
                      "tcp_fin_wait", "tcp_close_wait", "tcp_last_ack", "tcp_time_wait",
                      "tcp_close", "tcp_syn_sent2", "tcp_max_retrans", "tcp_unacknowledged")


@dataclass(frozen=True)
class Timeouts:
    """Per-state timeouts; field names follow the sysctls without the ``nf_conntrack_`` prefix."""

    tcp_none: float = 0.0            # never used for a live entry; slot kept for indexing
    tcp_syn_sent: float = 120.0
    tcp_syn_recv: float = 60.0
    tcp_established: float = 432000.0
    tcp_fin_wait: float = 120.0
    tcp_close_wait: float = 60.0
    tcp_last_ack: float = 30.0
    tcp_time_wait: float = 120.0
    tcp_close: float = 10.0
    tcp_syn_sent2: float = 120.0
    tcp_max_retrans: float = 300.0   # TCP_CONNTRACK_RETRANS
    tcp_unacknowledged: float = 300.0  # TCP_CONNTRACK_UNACK
    udp: float = 30.0                # UDP_CT_UNREPLIED
    udp_stream: float = 120.0        # UDP_CT_REPLIED
    icmp: float = 30.0
    generic: float = 600.0

    def tcp_table(self) -> tuple[float, ...]:
        """TCP timeouts indexed like the kernel's ``timeouts[]`` array (state, RETRANS=10, UNACK=11)."""
        return tuple(getattr(self, name) for name in TCP_TIMEOUT_FIELDS)
