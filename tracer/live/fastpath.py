"""The established-flow fast path: a packet of a connection conntrack already holds as
ESTABLISHED (or a one-way UDP stream) takes the path the previous packet of its direction
took, without the rules.

Felix's first rules accept ``ctstate RELATED,ESTABLISHED`` before any policy, so for such a
packet the pipeline's answer is already known: the same delivery and the same header changes
(de-NAT/NAT, TTL). Conntrack itself is not skipped: each lookup the remembered walk made (one
per node the flow crosses, and the tunnel's outer packet where it is tracked: WireGuard) is
made again with this packet, so TCP window tracking and timeouts advance as they would; the
framing itself (encryption included) is not redone, it changes nothing the next node sees
once unframed. When one lookup finds another state, the lookups already made are undone and
the packet walks the pipeline, which tracks it once, as the kernel would. The shortcut is
bounded:

- only packets that change no connection state take it (TCP without SYN, FIN or RST; UDP;
  ICMP echo), no longer than the smallest MTU the walk checked, with a TTL that outlives the
  walk's routing hops, and only while every replayed conntrack lookup finds the state it
  found then (ESTABLISHED; for UDP also NEW);
- an entry lives for :data:`REVALIDATE_SECONDS`; then a packet walks the whole pipeline
  again and re-learns the path;
- a new dataplane (reload) forgets every entry.

This is the megaflow idea of Open vSwitch's datapath cache: remember the outcome of a slow
lookup for packets that would get the same answer. The lookup reads the datagram's bytes
(addresses, protocol, ports or echo id) and builds only the conntrack key from them, so a hit
parses no :class:`Packet`; datagrams with IP options or fragments always take the pipeline.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from tracer.conntrack.tuples import PacketKey
from tracer.dataplane.packet import Packet
from tracer.dataplane.pipeline import Outcome
from tracer.dataplane.stages import conntrack_key
from tracer.dataplane.state import RunState
from tracer.dataplane.trace import ConntrackRecord, DeliverRecord, HookRecord, MtuRecord
from tracer.protocols import FIN, ICMP, RST, SYN, TCP, UDP

REVALIDATE_SECONDS = 1.0
# The conntrack states a remembered walk may have found. A one-way UDP stream stays NEW (no
# reply seen) and is judged by the rules packet by packet; the rules see the same headers and
# the same state each time, so the walk repeats as long as the state does.
REPLAYABLE = {UDP: ("ESTABLISHED", "NEW")}
TUNNEL_STATES = ("ESTABLISHED", "NEW")     # a tunnel's outer flow is UDP or IPIP (generic)
STATE_CHANGING_FLAGS = SYN | FIN | RST
ORIGINAL, DELIVERED = "original", "delivered"   # the forms of the packet a lookup may see
MAX_ENTRIES = 65536
PLAIN_IPV4 = 0x45                  # version 4, a 20-byte header: no options
FRAGMENT_BITS = 0x3FFF             # more-fragments and the fragment offset


@dataclass(frozen=True)
class Translation:
    """The delivered form's fields, where NAT changed them."""

    src: object
    dst: object
    sport: int | None
    dport: int | None
    icmp_id: int


@dataclass(frozen=True)
class Shortcut:
    target: str                   # the live end it is delivered to
    delivered_to: str             # as the pipeline says it ("pod ns/name", "host node-1", ...)
    flow: object                  # the live flow table's key of this connection
    ttl_drop: int                 # routing hops the walk took
    expires: float
    lookups: tuple[tuple[str, object, str], ...]  # per ct lookup: (node, the form it sees,
                                                  # the state it must find again)
    translation: Translation | None = None       # NAT changed addresses, ports or echo id
    path_mtu: int = 1 << 30       # the smallest MTU the walk checked against


@dataclass(frozen=True)
class Hit:
    target: str
    delivered_to: str
    flow: object
    translation: Translation | None
    ttl_drop: int


def byte_key(data: bytes) -> bytes | None:
    """The direction key of a datagram that may take the shortcut, read from its bytes:
    protocol, addresses, and ports (TCP without SYN, FIN or RST; UDP) or the echo type and id
    and code (ICMP echo); None for anything else, which the pipeline must see."""
    if len(data) < 28 or data[0] != PLAIN_IPV4 or (data[6] << 8 | data[7]) & FRAGMENT_BITS:
        return None
    protocol = data[9]
    if protocol == UDP:
        return data[9:10] + data[12:24]
    if protocol == TCP:
        if len(data) < 40 or data[33] & STATE_CHANGING_FLAGS:
            return None
        return data[9:10] + data[12:24]
    if protocol == ICMP and data[20] in (0, 8):
        return data[9:10] + data[12:22] + data[24:26]
    return None


def conntrack_key_of(data: bytes, length: int) -> PacketKey:
    """What conntrack reads from a datagram :func:`byte_key` accepted (as
    ``stages.conntrack_key`` of its parsed form)."""
    src, dst = struct.unpack_from("!II", data, 12)
    protocol = data[9]
    if protocol == TCP:
        sport, dport, seq, ack, offset, flags, window = struct.unpack_from("!HHIIBBH", data, 20)
        return PacketKey(src, dst, TCP, sport, dport, tcp_flags=flags & 0x3F, seq=seq, ack=ack,
                         window=window, payload_len=max(length - 20 - (offset >> 4) * 4, 0))
    if protocol == UDP:
        sport, dport = struct.unpack_from("!HH", data, 20)
        return PacketKey(src, dst, UDP, sport, dport, payload_len=max(length - 28, 0))
    ident = struct.unpack_from("!H", data, 24)[0]
    return PacketKey(src, dst, ICMP, sport=ident, icmp_type=data[20], icmp_code=data[21])


def translated_key(key: PacketKey, translation: Translation) -> PacketKey:
    """``key`` as the delivered form carries it."""
    if key.protocol == ICMP:
        return PacketKey(int(translation.src), int(translation.dst), ICMP,
                         sport=translation.icmp_id, icmp_type=key.icmp_type,
                         icmp_code=key.icmp_code)
    return PacketKey(int(translation.src), int(translation.dst), key.protocol,
                     translation.sport or 0, translation.dport or 0, tcp_flags=key.tcp_flags,
                     seq=key.seq, ack=key.ack, window=key.window, payload_len=key.payload_len)


class FastPath:
    def __init__(self) -> None:
        self.entries: dict[bytes, Shortcut] = {}
        self.hits = 0

    def clear(self) -> None:
        self.entries.clear()

    def lookup(self, data: bytes, length: int, state: RunState) -> Hit | None:
        """Where datagram ``data`` goes if the shortcut applies (its conntrack lookups made);
        None: send it through the pipeline. ``length`` is the IP length MTU checks see."""
        key = byte_key(data)
        entry = self.entries.get(key) if key is not None else None
        if entry is None or entry.expires < state.now or length > entry.path_mtu \
                or data[8] <= entry.ttl_drop or len(data) < (data[2] << 8 | data[3]):
            return None
        original = conntrack_key_of(data, data[2] << 8 | data[3])
        delivered = None
        undos = []
        for node, form, ctstate in entry.lookups:
            if form is ORIGINAL:
                seen = original
            elif form is DELIVERED:
                if delivered is None:
                    delivered = translated_key(original, entry.translation)
                seen = delivered
            else:
                seen = form                       # a tunnel's outer packet
            undo = state.conntrack(node).replay(seen, state.now, ctstate)
            if undo is None:                      # the connection changed: ask the rules,
                for earlier in reversed(undos):   # which track this packet afresh
                    earlier()
                del self.entries[key]
                return None
            undos.append(undo)
        self.hits += 1
        return Hit(entry.target, entry.delivered_to, entry.flow, entry.translation,
                   entry.ttl_drop)

    def learn(self, data: bytes, packet: Packet, target: str, flow: object, outcome: Outcome,
              now: float) -> None:
        """Remember ``outcome`` (datagram ``data``, parsed as ``packet``, delivered to live
        end ``target``; ``flow`` its flow table key) if it may be replayed."""
        key = byte_key(data)
        if key is None:
            return
        self.entries.pop(key, None)
        final = outcome.hops[-1].stages[-1]
        if not isinstance(final, DeliverRecord):
            return
        out = final.packet
        lookups = _replayable_lookups(outcome, _five(packet), _five(out),
                                      REPLAYABLE.get(packet.protocol, ("ESTABLISHED",)))
        if lookups is None:
            return
        mtus = [s.mtu for hop in outcome.hops for s in hop.stages if isinstance(s, MtuRecord)]
        if len(self.entries) >= MAX_ENTRIES:
            self.entries.clear()
        translation = None
        if _five(packet) != _five(out):
            translation = Translation(out.src, out.dst, out.sport, out.dport, out.icmp_id)
        self.entries[key] = Shortcut(target, outcome.delivered_to or "", flow,
                                     packet.ttl - out.ttl, now + REVALIDATE_SECONDS, lookups,
                                     translation, min(mtus, default=1 << 30))


def _five(packet: Packet) -> tuple:
    return (packet.src, packet.dst, packet.protocol, packet.sport, packet.dport,
            packet.icmp_id)


def _replayable_lookups(outcome: Outcome, original: tuple, delivered: tuple,
                        states: tuple[str, ...]) -> tuple[tuple[str, object, str], ...] | None:
    """Each tracked conntrack lookup of the walk as (node, the form it saw, state); the form is
    ORIGINAL, DELIVERED or, for the outer packet of a tunnel carrying either, that packet's
    conntrack key: framing is a function of the inner flow (fixed WireGuard ports, VXLAN's
    source port hashed from the inner flow, IPIP's none), so every packet of the flow has the
    same outer tuple, and UDP's and the generic tracker read nothing else. None when a lookup
    found a state not in ``states`` (outer: ``TUNNEL_STATES``) or saw any other packet."""
    lookups = []
    for hop in outcome.hops:
        seen = hop.packet
        for stage in hop.stages:
            if isinstance(stage, HookRecord):
                seen = stage.packet               # conntrack runs right after raw's hook
            elif isinstance(stage, ConntrackRecord):
                if stage.ctstate == "UNTRACKED":
                    continue
                five = _five(seen)
                if five in (original, delivered):
                    form = DELIVERED if five != original else ORIGINAL
                    allowed = states
                elif _is_tunnel_of(seen, (original, delivered)):
                    form, allowed = conntrack_key(seen), TUNNEL_STATES
                else:
                    return None
                if stage.ctstate not in allowed:
                    return None
                lookups.append((hop.node, form, stage.ctstate))
    return tuple(lookups) if lookups else None


def _is_tunnel_of(packet: Packet, forms: tuple[tuple, ...]) -> bool:
    inner = packet.inner
    return (packet.protocol != TCP and packet.protocol != ICMP and inner is not None
            and _five(inner) in forms)
