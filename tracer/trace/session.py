"""Stateful runs: packets sent one after another through the same dataplane and run state.

A :class:`Session` owns a :class:`~tracer.dataplane.state.RunState` (each node's connection
tracker and the clock) and the run's pins, and sends packets through the shared, immutable
dataplane; the trackers remember them. It knows how real endpoints open, use and close a
connection (TCP's three-way handshake and FIN exchange, a UDP request and its reply, an ICMP
echo and its reply), so a trace of an "established" packet is the packet that really follows
such an opening, not a forced state.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from tracer.dataplane.packet import Packet
from tracer.dataplane.pipeline import Outcome, Probe
from tracer.dataplane.state import DEFAULT_CONNTRACK_MAX, NO_PINS, Pins
from tracer.dataplane.trace import DeliverRecord
from tracer.protocols import (ACK, FIN, ICMP, ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, PSH, SYN,
                              TCP)
from tracer.trace.assemble import Dataplane

CLIENT_ISN, SERVER_ISN = 1_000, 5_000
TCP_SEGMENT_NO_DATA = 40              # IPv4 + TCP headers: the handshake carries no data
PACKET_INTERVAL = 0.001               # seconds between packets of a scripted exchange


@dataclass
class Exchange:
    """What happened to the packets of a scripted exchange, in order."""

    steps: list[tuple[str, Packet, Outcome]] = field(default_factory=list)

    @property
    def completed(self) -> bool:
        return all(outcome.drop is None for _, _, outcome in self.steps)

    def summary(self) -> str:
        parts = []
        for label, _, outcome in self.steps:
            fate = "delivered" if outcome.drop is None else (
                f"dropped on {outcome.drop.node} [{outcome.drop.reason}]")
            parts.append(f"{label} {fate}")
        return ", ".join(parts)


class Session:
    def __init__(self, dataplane: Dataplane, *, tcp_loose: bool = True,
                 capacity: int = DEFAULT_CONNTRACK_MAX, now: float = 0.0,
                 pins: Pins = NO_PINS):
        self.dataplane = dataplane
        self.state = dataplane.pipeline.new_state(now=now, tcp_loose=tcp_loose,
                                                  conntrack_max=capacity)
        self.pins = pins

    @property
    def now(self) -> float:
        return self.state.now

    def send(self, probe: Probe) -> Outcome:
        self.state.advance(PACKET_INTERVAL)
        return self.dataplane.pipeline.run(probe, self.state, self.pins)

    def advance(self, seconds: float) -> None:
        self.state.advance(seconds)

    # ------------------------------------------------------------------ scripted exchanges

    def open(self, probe: Probe, *, locate) -> tuple[Exchange, Probe]:
        """Open the connection ``probe`` belongs to, then return the probe for the packet that
        follows the opening (``locate(packet) -> Probe`` finds where a packet enters)."""
        first = probe.packet
        exchange = Exchange()
        request = opening(first)
        delivered = self._step(exchange, "SYN" if first.protocol == TCP else "request",
                               replace(probe, packet=request), request)
        answer = answer_to(delivered) if delivered is not None else None
        if answer is not None:
            self._step(exchange, "SYN-ACK" if first.protocol == TCP else "reply",
                       locate(answer), answer)
        if first.protocol != TCP:
            return exchange, replace(probe, packet=request)
        if delivered is not None:
            ack = first.with_(tcp_flags=ACK, seq=CLIENT_ISN + 1, ack_seq=SERVER_ISN + 1,
                              length=TCP_SEGMENT_NO_DATA, payload_len=0)
            self._step(exchange, "ACK", replace(probe, packet=ack), ack)
        return exchange, self._next(probe, first, CLIENT_ISN + 1, SERVER_ISN + 1)

    def close(self, probe: Probe, *, locate) -> Exchange:
        """Both sides close: FIN from the client, ACK, FIN from the server, last ACK."""
        first = probe.packet
        exchange = Exchange()
        c, s = CLIENT_ISN + 1 + first.payload_len, SERVER_ISN + 1
        fin = first.with_(tcp_flags=FIN | ACK, seq=c, ack_seq=s, payload_len=0)
        delivered = self._step(exchange, "FIN", replace(probe, packet=fin), fin)
        if delivered is None:
            return exchange
        back = _reverse(delivered)
        self._step(exchange, "ACK", locate(back), back.with_(tcp_flags=ACK, seq=s, ack_seq=c + 1))
        server_fin = back.with_(tcp_flags=FIN | ACK, seq=s, ack_seq=c + 1)
        self._step(exchange, "FIN", locate(server_fin), server_fin)
        last = first.with_(tcp_flags=ACK, seq=c + 1, ack_seq=s + 1, payload_len=0)
        self._step(exchange, "ACK", replace(probe, packet=last), last)
        return exchange

    def _step(self, exchange: Exchange, label: str, probe: Probe, packet: Packet):
        outcome = self.send(replace(probe, packet=packet))
        exchange.steps.append((label, packet, outcome))
        if outcome.drop is not None:
            return None
        return _delivered_packet(outcome)

    @staticmethod
    def _next(probe: Probe, first: Packet, seq: int, ack: int) -> Probe:
        payload = max(first.length - 40, 0)
        data = first.with_(tcp_flags=PSH | ACK, seq=seq, ack_seq=ack, payload_len=payload)
        return replace(probe, packet=data)


def opening(first: Packet) -> Packet:
    """The packet that opens ``first``'s connection: a SYN, the datagram, the echo request."""
    if first.protocol == TCP:
        return first.with_(tcp_flags=SYN, seq=CLIENT_ISN, ack_seq=0,
                           length=TCP_SEGMENT_NO_DATA, payload_len=0)
    if first.protocol == ICMP and first.icmp_type == ICMP_ECHO_REQUEST:
        return first.with_(icmp_id=7)
    return first


def answer_to(delivered: Packet) -> Packet | None:
    """What the receiver of an opening packet sends back, as it leaves the receiver: a SYN-ACK,
    a datagram from the port it was sent to, an echo reply; None for ICMP other than echo."""
    answer = _reverse(delivered)
    if delivered.protocol == TCP:
        return answer.with_(tcp_flags=SYN | ACK, seq=SERVER_ISN, ack_seq=CLIENT_ISN + 1)
    if delivered.protocol == ICMP:
        if delivered.icmp_type != ICMP_ECHO_REQUEST:
            return None
        return answer.with_(icmp_type=ICMP_ECHO_REPLY, icmp_code=0)
    return answer


def delivered_packet(outcome: Outcome) -> Packet:
    """The packet as it reached its destination (the outcome must be a delivery)."""
    return _delivered_packet(outcome)


def _delivered_packet(outcome: Outcome) -> Packet:
    last = outcome.hops[-1].stages[-1]
    assert isinstance(last, DeliverRecord)
    return last.packet


def _reverse(packet: Packet) -> Packet:
    """The answer to ``packet`` as its receiver sends it: addresses and ports swapped."""
    return Packet(src=packet.dst, dst=packet.src, protocol=packet.protocol,
                  sport=packet.dport, dport=packet.sport, icmp_type=packet.icmp_type,
                  icmp_code=packet.icmp_code, icmp_id=packet.icmp_id, tcp_flags=packet.tcp_flags,
                  length=packet.length)
