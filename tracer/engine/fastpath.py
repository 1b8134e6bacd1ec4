"""The established-flow fast path: which packets of a batch belong to a connection the
conntrack table already holds, looked up in the table's hash index in one compiled pass.

A packet found here is what felix's ``-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT``
(cali-FORWARD's first rules) lets through without any policy chain; the state update itself is
``ArrayConntrackTable.process_batch`` (nf_conntrack_in with TCP window tracking).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from tracer.conntrack.arrays import ArrayConntrackTable, ct_lookup


@njit(cache=True)
def _lookup_batch(hsh, src, dst, proto, sport, dport, out):
    for i in range(src.shape[0]):
        out[i] = ct_lookup(hsh, src[i], dst[i], proto[i], sport[i], dport[i])


def known_flows(table: ArrayConntrackTable, pkts: np.ndarray) -> np.ndarray:
    """Per packet of a conntrack ``PKT_DTYPE`` batch: ``slot * 2 + direction`` of its entry,
    or -1 for a packet of no known connection."""
    out = np.empty(len(pkts), dtype=np.int64)
    _lookup_batch(table.hash, pkts["src"], pkts["dst"], pkts["proto"], pkts["sport"],
                  pkts["dport"], out)
    return out
