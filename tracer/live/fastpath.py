"""The established-flow fast path: a packet of a connection conntrack already holds as
ESTABLISHED (or a one-way UDP stream) takes the path the previous packet of its direction
took, without the rules.

Felix's first rules accept ``ctstate RELATED,ESTABLISHED`` before any policy, so for such a
packet the pipeline's answer is already known: the same delivery and the same header changes
(de-NAT/NAT, TTL). Conntrack itself is not skipped: each lookup the remembered walk made
(one per node the flow crosses; tunnel packets are untracked) is made again with this
packet, so TCP window tracking and timeouts advance as they would. The shortcut is bounded:

- only packets that change no connection state take it (TCP without SYN, FIN or RST; UDP;
  ICMP echo), no longer than the smallest MTU the walk checked, and only while every
  replayed conntrack lookup finds the state it found then (ESTABLISHED; for UDP also NEW);
- an entry lives for :data:`REVALIDATE_SECONDS`; then a packet walks the whole pipeline
  again and re-learns the path;
- a new dataplane (reload) forgets every entry.

This is the megaflow idea of Open vSwitch's datapath cache: remember the outcome of a slow
lookup for packets that would get the same answer.
"""

from __future__ import annotations

from dataclasses import dataclass

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
STATE_CHANGING_FLAGS = SYN | FIN | RST
MAX_ENTRIES = 65536


@dataclass(frozen=True)
class Shortcut:
    target: str                   # destination pod key
    src: object
    dst: object
    sport: int | None
    dport: int | None
    icmp_id: int
    ttl_drop: int                 # routing hops the walk took
    expires: float
    lookups: tuple[tuple[str, bool, str], ...]   # per ct lookup: (node, sees the delivered
                                                 # form, the state it must find again)
    translated: bool = False      # NAT changed addresses, ports or the echo id
    path_mtu: int = 1 << 30       # the smallest MTU the walk checked against


def direction_key(packet: Packet) -> tuple:
    return (packet.src, packet.dst, packet.protocol, packet.sport, packet.dport,
            packet.icmp_id if packet.protocol == ICMP else 0)


def eligible(packet: Packet) -> bool:
    """Packets that change no connection state (conntrack would only refresh a timer)."""
    if packet.protocol == TCP:
        return packet.tcp_flags is not None and not packet.tcp_flags & STATE_CHANGING_FLAGS
    if packet.protocol == UDP:
        return True
    return packet.protocol == ICMP and packet.icmp_type in (0, 8) and packet.inner is None


class FastPath:
    def __init__(self) -> None:
        self.entries: dict[tuple, Shortcut] = {}
        self.hits = 0

    def clear(self) -> None:
        self.entries.clear()

    def lookup(self, packet: Packet, state: RunState) -> tuple[str, Packet | None, int] | None:
        """The destination pod, the packet as delivered (None: only its TTL changed) and the
        TTL taken, if the shortcut applies (its conntrack lookups made); None: send the
        packet through the pipeline."""
        if not eligible(packet):
            return None
        key = direction_key(packet)
        entry = self.entries.get(key)
        if entry is None or entry.expires < state.now or packet.length > entry.path_mtu:
            return None
        delivered = None
        if entry.translated:
            delivered = packet.with_(src=entry.src, dst=entry.dst, sport=entry.sport,
                                     dport=entry.dport, icmp_id=entry.icmp_id,
                                     ttl=packet.ttl - entry.ttl_drop)
        for node, translated, ctstate in entry.lookups:
            seen = delivered if translated else packet
            verdict = state.conntrack(node).process(conntrack_key(seen), state.now)
            if verdict.dropped or verdict.ctstate != ctstate:
                del self.entries[key]             # the connection changed: ask the rules
                return None
        self.hits += 1
        return entry.target, delivered, entry.ttl_drop

    def learn(self, packet: Packet, target: str, outcome: Outcome, now: float) -> None:
        """Remember ``outcome`` (a delivery to pod ``target``) if it may be replayed."""
        key = direction_key(packet)
        self.entries.pop(key, None)
        final = outcome.hops[-1].stages[-1]
        if not eligible(packet) or not isinstance(final, DeliverRecord):
            return
        out = final.packet
        lookups = _replayable_lookups(outcome, _five(packet), _five(out),
                                      REPLAYABLE.get(packet.protocol, ("ESTABLISHED",)))
        if lookups is None:
            return
        mtus = [s.mtu for hop in outcome.hops for s in hop.stages if isinstance(s, MtuRecord)]
        if len(self.entries) >= MAX_ENTRIES:
            self.entries.clear()
        self.entries[key] = Shortcut(target, out.src, out.dst, out.sport, out.dport,
                                     out.icmp_id, packet.ttl - out.ttl,
                                     now + REVALIDATE_SECONDS, lookups,
                                     _five(packet) != _five(out), min(mtus, default=1 << 30))


def _five(packet: Packet) -> tuple:
    return (packet.src, packet.dst, packet.protocol, packet.sport, packet.dport,
            packet.icmp_id)


def _replayable_lookups(outcome: Outcome, original: tuple, delivered: tuple,
                        states: tuple[str, ...]) -> tuple[tuple[str, bool, str], ...] | None:
    """Each tracked conntrack lookup of the walk as (node, saw the delivered form, state);
    None when one found a state not in ``states`` or saw a packet that is neither form."""
    lookups = []
    for hop in outcome.hops:
        seen = hop.packet
        for stage in hop.stages:
            if isinstance(stage, HookRecord):
                seen = stage.packet               # conntrack runs right after raw's hook
            elif isinstance(stage, ConntrackRecord):
                if stage.ctstate == "UNTRACKED":
                    continue
                if stage.ctstate not in states:
                    return None
                five = _five(seen)
                if five not in (original, delivered):
                    return None
                lookups.append((hop.node, five != original, stage.ctstate))
    return tuple(lookups) if lookups else None
