"""The reference connection tracker: a pure-Python ``nf_conntrack`` table, the truth.

Models net/netfilter/nf_conntrack_core.c for what felix relies on:

- ``process`` is ``nf_conntrack_in``: tuple lookup in both directions, ctinfo (NEW /
  ESTABLISHED / RELATED / INVALID / UNTRACKED), the per-protocol trackers (TCP state machine
  in :mod:`tracer.conntrack.tcp`, UDP stream, ICMP echo, generic) and ICMP errors that carry a
  tracked flow's header (``nf_conntrack_inet_error`` -> RELATED).
- A new entry is unconfirmed (not in the hash) until ``confirm`` (``__nf_conntrack_confirm``
  at POSTROUTING/INPUT); ``discard`` is the packet dying in between. Unconfirmed entries are
  invisible to lookups, as in the kernel, and their timeout counts from confirmation.
- Capacity is ``nf_conntrack_max`` and counts unconfirmed entries too: a new entry beyond it
  first reaps expired entries (the gc worker), then early-drops one non-ASSURED entry, else the
  packet is dropped ("conntrack table full"), as ``__nf_conntrack_alloc`` does.
- NAT: ``set_nat`` alters the reply tuple (``nf_conntrack_alter_reply``) and sets SRC_NAT /
  DST_NAT; ``masquerade``/``snat`` choose a free source port like ``get_unique_tuple``.

Deviations, on purpose: early_drop picks the oldest non-ASSURED entry of the whole table (the
kernel scans 8 hash buckets near the new tuple, which depends on its hash seed); a clash at
confirm returns False and frees the entry (the kernel may merge UDP clashes); the NAT port
search uses a seeded PRNG instead of get_random_u16; ``nf_nat_used_tuple_harder``'s takeover
of closing TCP entries is not modelled; expiry is ``expires <= now``.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from dataclasses import dataclass, replace

from tracer.conntrack import tcp
from tracer.conntrack.reasons import REASON_CODE, REASONS, TABLE_FULL
from tracer.conntrack.timeouts import Timeouts
from tracer.conntrack.tuples import (ICMP_ERROR_TYPES, ICMP_VALID_NEW, IPPROTO_ICMP, IPPROTO_TCP,
                                     IPPROTO_UDP, NR_ICMP_TYPES, CtVerdict, Entry, FlowTuple,
                                     NatRewrite, PacketKey)

# enum ip_conntrack_status bits the tracer uses (values as in the kernel).
EXPECTED, SEEN_REPLY, ASSURED, CONFIRMED, SRC_NAT, DST_NAT = 1, 2, 4, 8, 16, 32
STATUS_NAMES = ((EXPECTED, "EXPECTED"), (SEEN_REPLY, "SEEN_REPLY"), (ASSURED, "ASSURED"),
                (CONFIRMED, "CONFIRMED"), (SRC_NAT, "SRC_NAT"), (DST_NAT, "DST_NAT"))
UDP_STREAM_DELAY = 2.0   # nf_conntrack_udp_packet: stream_ts = first packet + 2 s
NF_NAT_MAX_ATTEMPTS = 128


@functools.cache                    # one set per combination of bits, not one per packet
def status_names(bits: int) -> frozenset[str]:
    return frozenset(name for bit, name in STATUS_NAMES if bits & bit)


@dataclass(slots=True)
class _Conn:
    """One ``struct nf_conn``: both tuples held explicitly, indexed by direction 0/1."""

    entry_id: int
    tuples: list[FlowTuple]
    status: int = 0
    mark: int = 0
    expires: float = 0.0       # absolute, once confirmed
    timeout: float = 0.0       # relative, while unconfirmed
    stream_ts: float = 0.0     # UDP
    tcp: tcp.TcpTrack | None = None

    def snapshot(self) -> Entry:
        state = tcp.STATE_NAMES[self.tcp.state] if self.tcp is not None else None
        return Entry(self.entry_id, self.tuples[0], self.tuples[1], status_names(self.status),
                     self.mark, self.expires, state)


class ConntrackTable:
    """A per-node conntrack table with kernel semantics; time is always passed in explicitly."""

    def __init__(self, capacity: int = 262144, *, tcp_loose: bool = True,
                 timeouts: Timeouts | None = None, be_liberal: bool = False,
                 nat_seed: int = 0) -> None:
        if capacity < 1:
            raise ValueError("conntrack capacity must be at least 1")
        self.capacity = capacity
        self.tcp_loose = tcp_loose
        self.be_liberal = be_liberal
        self.timeouts = timeouts or Timeouts()
        self._tcp_timeouts = self.timeouts.tcp_table()
        self._conns: dict[int, _Conn] = {}
        self._killed: dict[int, _Conn] = {}      # killed by the packet being processed
        self._index: dict[FlowTuple, tuple[int, int]] = {}
        self._next_id = 1
        self._rng = random.Random(nat_seed)

    # ----------------------------------------------------------------- nf_conntrack_in
    def process(self, key: PacketKey, now: float, *, notrack: bool = False) -> CtVerdict:
        """Track one packet (``nf_conntrack_in``); ``notrack`` models a raw-table NOTRACK."""
        self._killed.clear()                     # the previous packet has gone its way
        if notrack:
            return CtVerdict("UNTRACKED")
        if key.protocol == IPPROTO_ICMP:
            verdict = self._icmp_error(key, now)
            if verdict is not None:
                return verdict
        flow = key.tuple()
        while True:
            found = self._find(flow, now)
            if found is not None:
                conn, direction = found
            else:
                reply = flow.invert()
                if reply is None:
                    return _invalid("no reply tuple for this icmp type")
                conn = self._alloc(flow, reply, now)
                if conn is None:
                    return CtVerdict("INVALID", reason=TABLE_FULL, dropped=True)
                direction = 0
            ctstate = self._ctinfo(conn, direction)
            action, reason, kill = self._handle(conn, direction, key, now)
            if action == tcp.A_REPEAT:
                self._delete(conn)
                continue
            if action == tcp.A_INVALID:
                if not conn.status & CONFIRMED:
                    self._delete(conn)
                return CtVerdict("INVALID", _dir_name(direction), reason=REASONS[reason])
            if direction == 1:
                conn.status |= SEEN_REPLY
            if kill:
                # nf_ct_kill: the entry leaves the table, but the packet that killed it (an
                # RST) keeps its reference, so NAT still applies to it on its way out.
                self._delete(conn)
                self._killed[conn.entry_id] = conn
            state = tcp.STATE_NAMES[conn.tcp.state] if conn.tcp is not None else None
            return CtVerdict(ctstate, _dir_name(direction), conn.entry_id, state,
                             REASONS[reason] or None, status_names(conn.status))

    def replay(self, key: PacketKey, now: float, expect: str) -> Callable[[], None] | None:
        """``process`` for a packet expected to find a confirmed, live entry in state
        ``expect`` (a fast path replaying a remembered walk). If it does, the packet's effects
        stay and a function that undoes them is returned; if not, nothing has changed (None)
        and the packet can be processed afresh.

        Only for packets that cannot end or restart a connection (no SYN, FIN or RST: no
        kill, no repeat), so the entry is still there to restore."""
        hit = self._index.get(key.tuple())
        if hit is None:
            return None
        conn = self._conns[hit[0]]
        if conn.expires <= now:
            return None                          # its expiry is process's to make
        saved = (conn.status, conn.mark, conn.expires, conn.timeout, conn.stream_ts,
                 conn.tcp.copy() if conn.tcp is not None else None)

        def undo() -> None:
            (conn.status, conn.mark, conn.expires, conn.timeout, conn.stream_ts,
             conn.tcp) = saved

        verdict = self.process(key, now)
        if verdict.dropped or verdict.ctstate != expect or verdict.entry_id != conn.entry_id:
            undo()
            return None
        return undo

    def _ctinfo(self, conn: _Conn, direction: int) -> str:
        """resolve_normal_ct(): reply direction or a seen reply means ESTABLISHED."""
        if direction == 1 or conn.status & SEEN_REPLY:
            return "ESTABLISHED"
        return "RELATED" if conn.status & EXPECTED else "NEW"

    def _icmp_error(self, key: PacketKey, now: float) -> CtVerdict | None:
        """nf_conntrack_icmpv4_error(): None lets the packet go on to normal tracking."""
        if key.icmp_type is None:
            return _invalid("truncated packet")
        if key.icmp_type > NR_ICMP_TYPES:
            return _invalid("invalid icmp type")
        if key.icmp_type not in ICMP_ERROR_TYPES:
            return None
        if key.icmp_inner is None:
            return _invalid("truncated packet")
        inner = key.icmp_inner.tuple().invert()
        if inner is None:
            return _invalid("icmp error for no tracked connection")
        found = self._find(inner, now)
        if found is None:
            return _invalid("icmp error for no tracked connection")
        conn, direction = found
        if conn.tuples[direction].dst != key.dst:
            return _invalid("icmp error: outer daddr != inner")
        state = tcp.STATE_NAMES[conn.tcp.state] if conn.tcp is not None else None
        return CtVerdict("RELATED", _dir_name(direction), conn.entry_id, state, None,
                         status_names(conn.status))

    def _handle(self, conn: _Conn, direction: int, key: PacketKey,
                now: float) -> tuple[int, int, bool]:
        """nf_conntrack_handle_packet(): (action, reason code, kill)."""
        confirmed = bool(conn.status & CONFIRMED)
        if key.protocol == IPPROTO_TCP:
            if conn.tcp is None:
                conn.tcp = tcp.TcpTrack()
            remaining = conn.expires - now if confirmed else conn.timeout
            out = tcp.tcp_packet(conn.tcp, direction, key, confirmed=confirmed,
                                 seen_reply=bool(conn.status & SEEN_REPLY),
                                 assured=bool(conn.status & ASSURED), remaining=remaining,
                                 timeouts=self._tcp_timeouts, loose=self.tcp_loose,
                                 be_liberal=self.be_liberal)
            if out.shrink_to is not None:
                conn.expires = now + out.shrink_to
            if out.timeout is not None:
                self._refresh(conn, out.timeout, now)
            if out.assured:
                conn.status |= ASSURED
            action = tcp.A_ACCEPT if out.action == tcp.A_IGNORE else out.action
            return action, out.reason, out.kill
        if key.protocol == IPPROTO_UDP:
            self._udp_packet(conn, now)
        elif key.protocol == IPPROTO_ICMP:
            if conn.tuples[0].icmp_type not in ICMP_VALID_NEW:
                return tcp.A_INVALID, REASON_CODE["icmp: can't create new conn with this type"], False
            self._refresh(conn, self.timeouts.icmp, now)
        else:
            self._refresh(conn, self.timeouts.generic, now)
        return tcp.A_ACCEPT, 0, False

    def _udp_packet(self, conn: _Conn, now: float) -> None:
        """nf_conntrack_udp_packet(): 30 s until replied; 120 s and ASSURED once a stream.

        A stream is a replied flow still active 2 s after its first packet; Linux 6.x sets
        ASSURED only then (checked against the running kernel in test_conntrack_kernel.py).
        """
        if not conn.status & CONFIRMED:
            conn.stream_ts = now + UDP_STREAM_DELAY
        if conn.status & SEEN_REPLY:
            stream = now > conn.stream_ts
            self._refresh(conn, self.timeouts.udp_stream if stream else self.timeouts.udp, now)
            if stream:
                conn.status |= ASSURED
        else:
            self._refresh(conn, self.timeouts.udp, now)

    def _refresh(self, conn: _Conn, timeout: float, now: float) -> None:
        """__nf_ct_refresh_acct(): unconfirmed entries keep a relative timeout."""
        if conn.status & CONFIRMED:
            conn.expires = now + timeout
        else:
            conn.timeout = timeout

    # ----------------------------------------------------------------- table bookkeeping
    def _find(self, flow: FlowTuple, now: float) -> tuple[_Conn, int] | None:
        hit = self._index.get(flow)
        if hit is None:
            return None
        conn = self._conns[hit[0]]
        if conn.expires <= now:
            self._delete(conn)   # nf_ct_gc_expired on the lookup path
            return None
        return conn, hit[1]

    def _alloc(self, orig: FlowTuple, reply: FlowTuple, now: float) -> _Conn | None:
        if len(self._conns) >= self.capacity:
            self.expire(now)
            if len(self._conns) >= self.capacity and not self._early_drop():
                return None
        conn = _Conn(self._next_id, [orig, reply])
        self._next_id += 1
        self._conns[conn.entry_id] = conn
        return conn

    def _early_drop(self) -> bool:
        """early_drop(): free one confirmed, non-ASSURED entry (the oldest)."""
        for conn in self._conns.values():   # dicts keep insertion (= id) order
            if conn.status & CONFIRMED and not conn.status & ASSURED:
                self._delete(conn)
                return True
        return False

    def _delete(self, conn: _Conn) -> None:
        self._conns.pop(conn.entry_id, None)
        if conn.status & CONFIRMED:
            for flow in conn.tuples:
                if self._index.get(flow, (None,))[0] == conn.entry_id:
                    del self._index[flow]

    def confirm(self, entry_id: int, now: float) -> bool:
        """__nf_conntrack_confirm(): insert an unconfirmed entry; False on a clashing tuple.

        Confirming an unknown (already freed or killed) or confirmed entry is a no-op (True).
        """
        conn = self._conns.get(entry_id)
        if conn is None or conn.status & CONFIRMED:
            return True
        if any(self._find(flow, now) is not None for flow in conn.tuples):
            del self._conns[entry_id]   # insert_failed: the packet is dropped
            return False
        conn.status |= CONFIRMED
        conn.expires = now + conn.timeout
        self._index[conn.tuples[0]] = (entry_id, 0)
        self._index[conn.tuples[1]] = (entry_id, 1)
        return True

    def discard(self, entry_id: int) -> None:
        """The packet died before confirmation: its unconfirmed entry goes with it."""
        conn = self._conns.get(entry_id)
        if conn is not None and not conn.status & CONFIRMED:
            del self._conns[entry_id]

    def expire(self, now: float) -> int:
        """Remove every confirmed entry whose timeout has passed; returns how many."""
        dead = [c for c in self._conns.values() if c.status & CONFIRMED and c.expires <= now]
        for conn in dead:
            self._delete(conn)
        return len(dead)

    def entries(self, now: float) -> list[Entry]:
        """Confirmed, unexpired entries in creation order (what ``conntrack -L`` lists)."""
        return [c.snapshot() for c in self._conns.values()
                if c.status & CONFIRMED and c.expires > now]

    def get(self, entry_id: int) -> Entry | None:
        conn = self._conns.get(entry_id)
        return conn.snapshot() if conn is not None else None

    @property
    def count(self) -> int:
        """Entries counted against the capacity, unconfirmed ones included."""
        return len(self._conns)

    def set_mark(self, entry_id: int, mark: int) -> None:
        self._conns[entry_id].mark = mark & 0xFFFFFFFF

    # ----------------------------------------------------------------- NAT
    def set_nat(self, entry_id: int, *, reply_src: int | None = None,
                reply_sport: int | None = None, reply_dst: int | None = None,
                reply_dport: int | None = None) -> None:
        """nf_conntrack_alter_reply() at NAT setup: only an unconfirmed entry may change.

        DNAT sets the reply's src (and sport); SNAT/MASQUERADE set its dst (and dport; for
        ICMP the NATed echo id is the reply's ``sport``).
        """
        conn = self._unconfirmed(entry_id)
        reply = conn.tuples[1]
        reply = replace(reply,
                        src=reply.src if reply_src is None else reply_src,
                        sport=reply.sport if reply_sport is None else reply_sport,
                        dst=reply.dst if reply_dst is None else reply_dst,
                        dport=reply.dport if reply_dport is None else reply_dport)
        self._set_reply(conn, reply)

    def dnat(self, entry_id: int, to_dst: int, to_port: int | None = None) -> None:
        """DNAT --to-destination: the reply comes from the new destination."""
        conn = self._unconfirmed(entry_id)
        port = to_port if to_port is not None and conn.tuples[0].protocol != IPPROTO_ICMP else None
        self.set_nat(entry_id, reply_src=to_dst, reply_sport=port)

    def masquerade(self, entry_id: int, to_src: int, now: float, *,
                   port_range: tuple[int, int] | None = None) -> None:
        """SNAT/MASQUERADE to ``to_src``, picking a free source port like get_unique_tuple()."""
        conn = self._unconfirmed(entry_id)
        curr = conn.tuples[1].invert()
        assert curr is not None
        chosen = self._unique_src(conn, curr, to_src, port_range, now)
        reply = chosen.invert()
        assert reply is not None
        self._set_reply(conn, reply)

    snat = masquerade

    def translate(self, entry_id: int, direction: str) -> NatRewrite:
        """How to rewrite a packet of this entry travelling in ``direction``."""
        conn = self._conns.get(entry_id) or self._killed[entry_id]
        want = conn.tuples[1 if direction == "original" else 0].invert()
        assert want is not None
        snat, dnat = bool(conn.status & SRC_NAT), bool(conn.status & DST_NAT)
        if direction == "original":
            return NatRewrite(want.src, want.dst, want.sport, want.dport, snat, dnat)
        return NatRewrite(want.src, want.dst, want.sport, want.dport, dnat, snat)

    def _unconfirmed(self, entry_id: int) -> _Conn:
        conn = self._conns.get(entry_id)
        if conn is None or conn.status & CONFIRMED:
            raise ValueError(f"conntrack entry {entry_id} is not an unconfirmed entry")
        return conn

    def _set_reply(self, conn: _Conn, reply: FlowTuple) -> None:
        orig = conn.tuples[0]
        conn.tuples[1] = reply
        conn.status &= ~(SRC_NAT | DST_NAT)
        if orig.protocol == IPPROTO_ICMP:
            dnat, snat = reply.src != orig.dst, (reply.dst, reply.sport) != (orig.src, orig.sport)
        else:
            dnat = (reply.src, reply.sport) != (orig.dst, orig.dport)
            snat = (reply.dst, reply.dport) != (orig.src, orig.sport)
        conn.status |= (DST_NAT if dnat else 0) | (SRC_NAT if snat else 0)

    def _tuple_taken(self, candidate: FlowTuple, conn: _Conn, now: float) -> bool:
        """nf_nat_used_tuple(): would the candidate's reply tuple clash with another entry?"""
        reply = candidate.invert()
        found = self._find(reply, now) if reply is not None else None
        if found is None or found[0] is conn:
            return False
        return found[0].tuples[0] != conn.tuples[0]

    def _unique_src(self, conn: _Conn, curr: FlowTuple, to_src: int,
                    port_range: tuple[int, int] | None, now: float) -> FlowTuple:
        """get_unique_tuple() for a SRC manip to a single address."""
        def in_range(flow: FlowTuple) -> bool:
            return flow.src == to_src and (port_range is None or flow.protocol == IPPROTO_ICMP
                                           or port_range[0] <= flow.sport <= port_range[1])
        if in_range(curr):
            if not self._tuple_taken(curr, conn, now):
                return curr
        else:
            mapped = self._existing_src_map(curr, now)
            if mapped is not None and in_range(mapped) and not self._tuple_taken(mapped, conn, now):
                return mapped
        candidate = replace(curr, src=to_src)
        if in_range(candidate) and not self._tuple_taken(candidate, conn, now):
            return candidate
        return self._search_port(conn, candidate, port_range, now)

    def _existing_src_map(self, curr: FlowTuple, now: float) -> FlowTuple | None:
        """find_appropriate_src(): reuse the mapping of another flow from the same src:port."""
        for other in self._conns.values():
            orig = other.tuples[0]
            if (other.status & CONFIRMED and other.status & SRC_NAT and other.expires > now
                    and (orig.src, orig.sport, orig.protocol) == (curr.src, curr.sport,
                                                                  curr.protocol)):
                return replace(curr, src=other.tuples[1].dst, sport=other.tuples[1].dport
                               if curr.protocol != IPPROTO_ICMP else other.tuples[1].sport)
        return None

    def _search_port(self, conn: _Conn, candidate: FlowTuple,
                     port_range: tuple[int, int] | None, now: float) -> FlowTuple:
        """nf_nat_l4proto_unique_tuple(): probe ports from a random offset, halving on failure."""
        if candidate.protocol not in (IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP):
            return candidate
        port = candidate.sport
        if candidate.protocol == IPPROTO_ICMP and port_range is None:
            low, size = 0, 65536
        elif port_range is not None:
            low, size = port_range[0], port_range[1] - port_range[0] + 1
        elif port < 1024:
            low, size = (1, 511) if port < 512 else (600, 424)   # low ports stay low
        else:
            low, size = 1024, 65535 - 1024 + 1
        offset = self._rng.getrandbits(16)
        attempts = min(size, NF_NAT_MAX_ATTEMPTS)
        while True:
            for _ in range(attempts):
                trial = replace(candidate, sport=low + offset % size)
                if not self._tuple_taken(trial, conn, now):
                    return trial
                offset = (offset + 1) & 0xFFFF
            if attempts >= size or attempts < 16:
                return trial   # nothing free: the clash shows up at confirm
            attempts //= 2
            offset = self._rng.getrandbits(16)


def _invalid(reason: str) -> CtVerdict:
    return CtVerdict("INVALID", reason=reason)


def _dir_name(direction: int) -> str:
    return "original" if direction == 0 else "reply"
