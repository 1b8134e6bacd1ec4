"""What the live loop saw: one record per flow (both directions of a connection), the verdict
of its last packet and, for a drop, the deciding rule and Calico policy.

A flow is keyed as conntrack keys it, both directions together, so a SYN and its SYN-ACK
are one flow. Drops are printed as they happen, at most once a second per flow (with the
number suppressed), so a flood of denied packets cannot drown the terminal.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field, fields

from tracer.dataplane.packet import Packet
from tracer.protocols import ICMP, PORTED, display_name

DROP_PRINT_INTERVAL = 1.0        # seconds between printed drops of one flow
FLOWS_KEPT = 4096                # oldest flows are forgotten beyond this


@dataclass
class Flow:
    id: int                      # stable while ``up`` runs: ``flows --trace ID``
    protocol: str
    client: str                  # "ip:port" (or ip for ICMP) of whoever sent first
    server: str
    source: str                  # "ns/pod" or "external ..." of the client
    destination: str
    first_seen: float
    last_seen: float
    packets: int = 0
    delivered: int = 0
    dropped: int = 0
    verdict: str = ""            # of the last packet: "delivered to ..." or "dropped"
    node: str | None = None      # where the last drop happened
    reason: str | None = None
    deciding: str | None = None  # the rule and policy behind the last drop
    why: str | None = None
    _printed_at: float = field(default=0.0, repr=False)
    _suppressed: int = field(default=0, repr=False)
    # (dataplane, probe, outcome) of the first packet and of the last drop, explained only
    # when someone asks for the trace (``LiveLoop.flow_traces``)
    _first: tuple | None = field(default=None, repr=False)
    _last_drop: tuple | None = field(default=None, repr=False)

    def public(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)
                if not f.name.startswith("_")}


def flow_key(packet: Packet) -> tuple:
    """The same key for both directions of one connection (ICMP echo: by identifier)."""
    src, dst = int(packet.src), int(packet.dst)     # ints: the fast path hashes it per packet
    if packet.protocol in PORTED:
        a, b = (src, packet.sport), (dst, packet.dport)
    elif packet.protocol == ICMP:
        a, b = (src, packet.icmp_id), (dst, packet.icmp_id)
    else:
        a, b = (src, 0), (dst, 0)
    return (packet.protocol, *sorted((a, b)))


def endpoint_text(packet: Packet, side: str) -> str:
    ip = packet.src if side == "src" else packet.dst
    port = packet.sport if side == "src" else packet.dport
    return f"{ip}:{port}" if packet.protocol in PORTED else str(ip)


class FlowTable:
    def __init__(self, clock=time.time) -> None:
        self.flows: dict[tuple, Flow] = {}
        self.clock = clock
        self.changed = False
        self._next_id = 1

    def record(self, packet: Packet, source: str, destination: str) -> tuple[Flow, bool]:
        """The flow ``packet`` belongs to (made if new) and whether it is new."""
        key = flow_key(packet)
        now = self.clock()
        flow = self.flows.get(key)
        new = flow is None
        if new:
            if len(self.flows) >= FLOWS_KEPT:
                self.flows.pop(next(iter(self.flows)))
            flow = self.flows[key] = Flow(self._next_id, display_name(packet.protocol),
                                          endpoint_text(packet, "src"),
                                          endpoint_text(packet, "dst"), source, destination,
                                          now, now)
            self._next_id += 1
        flow.packets += 1
        flow.last_seen = now
        self.changed = True
        return flow, new

    def alias(self, key: tuple, flow: Flow) -> None:
        """Count packets keyed ``key`` on ``flow`` too: a DNAT'd connection's answers, which
        come from the backend, belong to the flow its request opened."""
        self.flows.setdefault(key, flow)

    def distinct(self) -> list[Flow]:
        """Each flow once (a NAT'd flow is also filed under its answers' key)."""
        return list({id(flow): flow for flow in self.flows.values()}.values())

    def by_id(self, flow_id: int) -> Flow | None:
        return next((f for f in self.flows.values() if f.id == flow_id), None)

    def touch(self, key: tuple) -> Flow | None:
        """Count a packet on flow ``key`` (:func:`flow_key`) if the flow is still known (the
        fast path's bookkeeping)."""
        flow = self.flows.get(key)
        if flow is not None:
            flow.packets += 1
            flow.last_seen = self.clock()
            self.changed = True
        return flow

    def dump(self, path: str) -> None:
        """Write the table as JSON (atomically: ``flows`` may read it at any time)."""
        rows = [flow.public() for flow in self.distinct()]
        with open(path + ".tmp", "w") as handle:
            json.dump(rows, handle, indent=1)
        os.replace(path + ".tmp", path)
        self.changed = False


def should_print(flow: Flow, now: float) -> tuple[bool, int]:
    """Whether to print this drop now, and how many were held back since the last print."""
    if now - flow._printed_at < DROP_PRINT_INTERVAL:
        flow._suppressed += 1
        return False, 0
    held, flow._suppressed, flow._printed_at = flow._suppressed, 0, now
    return True, held


def format_flows(rows: list[dict]) -> str:
    """The flow table as text, one line per flow, most recent last."""
    if not rows:
        return "no flows seen yet\n"
    lines = []
    for row in sorted(rows, key=lambda r: r["last_seen"]):
        stamp = time.strftime("%H:%M:%S", time.localtime(row["last_seen"]))
        line = (f"{stamp} #{row['id']} {row['protocol']} {row['client']} -> {row['server']} "
                f"({row['source']} -> {row['destination']}) packets={row['packets']} "
                f"delivered={row['delivered']} dropped={row['dropped']} last: {row['verdict']}")
        if row.get("reason"):
            line += f" on {row['node']} [{row['reason']}]"
        if row.get("deciding"):
            line += f" by {row['deciding']}"
        lines.append(line)
    return "\n".join(lines) + "\n"
