"""Why conntrack marks a packet INVALID, ignores it or drops it: one fixed list.

Both tables report reasons from this list, the array table by index, so the two can be
compared one to one. Texts follow the kernel's ``nf_ct_l4proto_log_invalid`` messages.
"""

from __future__ import annotations

REASONS: tuple[str, ...] = (
    "",                                                    # 0: no reason
    "conntrack table full",                                # 1: __nf_conntrack_alloc
    "truncated packet",                                    # 2: tcp_error / icmp short packet
    "invalid tcp flag combination",                        # 3: tcp_error
    "invalid new: no state for first packet",              # 4: tcp_new sIV
    "invalid new: tcp_loose=0, no pickup",                 # 5: tcp_new, loose off
    "invalid: state table rejects packet",                 # 6: tcp_packet sIV
    "packet ignored by state table",                       # 7: tcp_packet sIG (accepted)
    "SEQ is over upper bound (over the window of the receiver)",  # 8
    "ACK is over upper bound (ACKed data not seen yet)",   # 9
    "SEQ is under lower bound (already ACKed data retransmitted)",  # 10: ignored
    "ignored ACK under lower bound (possible overly delayed)",     # 11: ignored
    "bytes more than expected (window overshot)",          # 12: ignored
    "invalid rst",                                         # 13
    "challenge-ack ignored",                               # 14: accepted
    "invalid icmp type",                                   # 15
    "icmp error for no tracked connection",                # 16
    "icmp error: outer daddr != inner",                    # 17
    "icmp: can't create new conn with this type",          # 18
    "no reply tuple for this icmp type",                   # 19: nf_ct_invert_tuple fails
    "reopen of closed connection",                         # 20: informational (NF_REPEAT)
)
REASON_CODE = {text: code for code, text in enumerate(REASONS)}

TABLE_FULL = REASONS[1]
