"""IPv4 reassembly as conntrack's defrag does it before classification.

``nf_defrag_ipv4`` (net/ipv4/netfilter/nf_defrag_ipv4.c, hook priority
NF_IP_PRI_CONNTRACK_DEFRAG = -400, before the raw table) hands every fragment to
``ip_defrag`` (net/ipv4/ip_fragment.c). The rules implemented here, from that file and
net/ipv4/inet_fragment.c as of Linux 5.x/6.x:

- Queue key: (saddr, daddr, id, protocol) plus the defrag user and zone (``ip4_frag_init``);
  here the capture interface stands for the user, so the same datagram seen on two
  interfaces of a ``-i any`` capture makes two queues.
- Timer: ``inet_frag_create`` arms the queue's timer once, ``ipfrag_time`` (30 s) after the
  first fragment; it is not pushed back by later fragments. An expired queue is dropped
  (``ip_expire``; the kernel also sends ICMP time exceeded when fragment 0 was in).
- ``ip_frag_queue``: offset = (frag_off & IP_OFFSET) * 8, end = offset + tot_len - ihl. A last
  fragment (MF clear) whose end falls short of data already queued, or differs from an
  earlier last fragment's end, discards the queue; a non-last fragment has its end rounded
  down to a multiple of 8 and may not extend beyond a known last fragment; an empty
  fragment (end == offset) discards the queue.
- ``inet_frag_queue_insert`` (RFC 5722 as the kernel applies it to IPv4 since 4.19/5.x): the
  fragment goes after the highest end if it starts at or beyond it; otherwise it must fall
  in a gap. A fragment lying wholly inside an already queued run is a duplicate: it alone is
  dropped and the queue kept. Any other overlap discards the whole queue.
- Complete when fragment 0 and the last fragment are in and the bytes queued equal the
  length (``meat == len``). ``ip_frag_reasm`` then builds the datagram from the header of the
  fragment at offset 0 (``inet_frag_reasm_prepare`` morphs the arriving skb into the head),
  with tot_len = ihl + len (over 65535 fails), DF set only if every largest fragment had
  DF (``max_df_size == max_size``), and the ECN bits combined by ``ip_frag_ecn_table``
  (Not-ECT mixed with CE fails).
- The datagram continues at the moment its last missing fragment arrives: its row is the
  row of that fragment (the kernel's order, so packets captured between the fragments are
  classified first); ``first_frame`` in the capture columns keeps fragment 0's frame.

Not modelled: ``ipfrag_max_dist`` (off unless set per peer), the memory thresholds
(``ipfrag_high_thresh``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from tracer.capture.columns import Reason
from tracer.encap.ipv4 import internet_checksum

IPFRAG_TIME_NS = 30 * 1_000_000_000          # net.ipv4.ipfrag_time default
IP_MF, IP_DF, IP_OFFSET = 0x2000, 0x4000, 0x1FFF
MAX_DATAGRAM = 65535
# IPFRAG_ECN_* bits of ip4_frag_ecn and the combinations ip_frag_ecn_table refuses.
ECN_NOT_ECT, ECN_CE = 0x01, 0x08


@dataclass
class Fragment:
    row: int
    offset: int
    end: int
    data: bytes                  # the fragment's payload (after its IPv4 header)
    header: bytes                # its IPv4 header (ihl*4 bytes)


@dataclass
class Queue:
    created_ns: int
    length: int = 0
    first_in: bool = False
    last_in: bool = False
    meat: int = 0
    runs: list[list[int]] = field(default_factory=list)    # [start, end], sorted, disjoint
    frags: list[Fragment] = field(default_factory=list)
    max_size: int = 0
    max_df_size: int = 0
    ecn: int = 0


@dataclass(frozen=True)
class Reassembled:
    row: int                     # the row that now carries the datagram
    datagram: bytes
    rows: tuple[int, ...]        # every fragment row that went into it, in offset order
    first_row: int               # the fragment at offset 0


@dataclass
class Outcome:
    datagrams: list[Reassembled] = field(default_factory=list)
    failed: dict[int, Reason] = field(default_factory=dict)     # row -> why it was dropped


class Defragmenter:
    """Feed fragments in capture order with :meth:`add`; :meth:`finish` closes the rest."""

    def __init__(self, timeout_ns: int = IPFRAG_TIME_NS):
        self.timeout_ns = timeout_ns
        self.queues: dict[tuple, Queue] = {}
        self.outcome = Outcome()

    def add(self, key: tuple, row: int, ts_ns: int, datagram: bytes) -> None:
        """``datagram`` is the fragment from its IPv4 header to tot_len."""
        ihl = (datagram[0] & 0x0F) * 4
        tos, frag_off = datagram[1], struct.unpack("!H", datagram[6:8])[0]
        queue = self.queues.get(key)
        if queue is not None and ts_ns >= queue.created_ns + self.timeout_ns:
            self._kill(key, Reason.FRAG_TIMEOUT)
            queue = None
        if queue is None:
            queue = self.queues[key] = Queue(created_ns=ts_ns)
        offset = (frag_off & IP_OFFSET) * 8
        end = offset + len(datagram) - ihl
        if not frag_off & IP_MF:
            if end < queue.length or (queue.last_in and end != queue.length):
                return self._discard(key, row, Reason.FRAG_BAD_LENGTH)
            queue.last_in, queue.length = True, end
        else:
            end &= ~7
            if end > queue.length:
                if queue.last_in:
                    return self._discard(key, row, Reason.FRAG_BAD_LENGTH)
                queue.length = end
        if end == offset:
            return self._discard(key, row, Reason.FRAG_BAD_LENGTH)
        verdict = _insert(queue, offset, end)
        if verdict == "dup":
            self.outcome.failed[row] = Reason.FRAG_DUPLICATE
            return None
        if verdict == "overlap":
            return self._discard(key, row, Reason.FRAG_OVERLAP)
        queue.frags.append(Fragment(row, offset, end, datagram[ihl:ihl + end - offset],
                                    datagram[:ihl]))
        queue.meat += end - offset
        queue.ecn |= _ecn_bit(tos)
        queue.first_in |= offset == 0
        size = end - offset + ihl
        queue.max_size = max(queue.max_size, size)
        if frag_off & IP_DF:
            queue.max_df_size = max(queue.max_df_size, size)
        if queue.first_in and queue.last_in and queue.meat == queue.length:
            self._reassemble(key, queue, row)
        return None

    def finish(self, end_ns: int) -> Outcome:
        """Queues still open at the end of the capture: timed out or incomplete."""
        for key, queue in list(self.queues.items()):
            why = (Reason.FRAG_TIMEOUT if end_ns >= queue.created_ns + self.timeout_ns
                   else Reason.FRAG_INCOMPLETE)
            self._kill(key, why)
        return self.outcome

    def _kill(self, key: tuple, why: Reason) -> None:
        for frag in self.queues.pop(key).frags:
            self.outcome.failed[frag.row] = why

    def _discard(self, key: tuple, row: int, why: Reason) -> None:
        self._kill(key, why)
        self.outcome.failed[row] = why

    def _reassemble(self, key: tuple, queue: Queue, row: int) -> None:
        frags = sorted(queue.frags, key=lambda f: f.offset)
        head = frags[0]
        ihl = len(head.header)
        if ihl + queue.length > MAX_DATAGRAM:
            return self._kill(key, Reason.FRAG_OVERSIZE)
        if queue.ecn & ECN_CE and queue.ecn & ECN_NOT_ECT:
            return self._kill(key, Reason.FRAG_ECN)
        self.queues.pop(key)
        header = bytearray(head.header)
        if queue.ecn & ECN_CE:
            header[1] |= 0x03
        header[2:4] = struct.pack("!H", ihl + queue.length)
        header[6:8] = struct.pack("!H", IP_DF if queue.max_df_size == queue.max_size else 0)
        header[10:12] = b"\x00\x00"
        header[10:12] = struct.pack("!H", internet_checksum(bytes(header)))
        self.outcome.datagrams.append(Reassembled(
            row, bytes(header) + b"".join(f.data for f in frags),
            tuple(f.row for f in frags), head.row))
        return None


def _ecn_bit(tos: int) -> int:
    """ip4_frag_ecn: 1 << (tos & INET_ECN_MASK) -> NOT_ECT 1, ECT_1 2, ECT_0 4, CE 8."""
    return 1 << (tos & 0x03)


def _insert(queue: Queue, offset: int, end: int) -> str:
    """inet_frag_queue_insert on runs of contiguous fragments: "ok", "dup" or "overlap"."""
    runs = queue.runs
    if not runs:
        runs.append([offset, end])
        return "ok"
    last_end = runs[-1][1]
    if last_end < end:
        if offset < last_end:
            return "overlap"
        if offset == last_end:
            runs[-1][1] = end
        else:
            runs.append([offset, end])
        return "ok"
    hits = [run for run in runs if offset < run[1] and end > run[0]]
    if not hits:
        runs.append([offset, end])
        runs.sort()
        return "ok"
    if len(hits) == 1 and hits[0][0] <= offset and end <= hits[0][1]:
        return "dup"
    return "overlap"
