"""The JSON form of a :class:`PacketTrace`: stable keys for scripts and CI checks."""

from __future__ import annotations

import json

from tracer.dataplane.iptables_save import format_rule
from tracer.dataplane.packet import Packet
from tracer.dataplane.trace import (ConntrackRecord, DecapRecord, DeliverRecord, DropRecord,
                                    EncapRecord, HookRecord, MtuRecord, NatRecord, RouteRecord)
from tracer.trace.result import PacketTrace


def trace_to_dict(trace: PacketTrace) -> dict:
    return {
        "verdict": trace.verdict,
        "reason": trace.reason,
        "why": trace.why,
        "hint": trace.hint,
        "packet": _packet(trace.packet),
        "from": trace.source,
        "to": trace.destination,
        "delivered_to": trace.delivered_to,
        "assumptions": list(trace.assumptions),
        "deciding": [_decision(d) for d in trace.deciding],
        "selected_by": {k: list(v) for k, v in trace.selected_by.items()},
        "staged": list(trace.staged),
        "hops": [step for hop in trace.hops for step in _steps(hop)],
    }


def render_json(trace: PacketTrace) -> str:
    return json.dumps(trace_to_dict(trace), indent=2) + "\n"


def _packet(packet: Packet) -> dict:
    return {"src": str(packet.src), "dst": str(packet.dst), "protocol": packet.protocol_name,
            "sport": packet.sport, "dport": packet.dport, "length": packet.length,
            "ttl": packet.ttl, "icmp_type": packet.icmp_type, "icmp_code": packet.icmp_code}


def _decision(d) -> dict:
    prov = d.provenance
    return {
        "node": d.node, "table": d.table, "chain": d.chain, "rule": d.rule_number,
        "rule_text": d.rule_text, "action": d.effect,
        "role": prov.role if prov else None,
        "policy": prov.policy if prov else None,
        "policy_kind": prov.policy_kind if prov else None,
        "tier": prov.tier if prov else None,
        "direction": prov.direction if prov else None,
        "policy_rule_index": prov.rule_index if prov else None,
        "profile": prov.profile if prov else None,
        "endpoint": prov.endpoint if prov else None,
    }


def _steps(hop):
    for stage in hop.stages:
        base = {"node": hop.node}
        if isinstance(stage, HookRecord):
            for event in stage.events:
                yield {**base, "stage": "netfilter", "hook": stage.hook, "table": event.table,
                       "chain": event.chain, "kind": event.kind, "rule": event.rule_number,
                       "rule_text": format_rule(event.chain, event.rule) if event.rule else None,
                       "action": event.effect, "target_chain": event.target_chain,
                       "mark_before": hex(event.mark_before),
                       "mark_after": hex(event.mark_after)}
            yield {**base, "stage": "hook", "hook": stage.hook, "table": stage.table,
                   "action": stage.verdict, "mark_before": hex(stage.mark_before),
                   "mark_after": hex(stage.mark_after), "assumptions": list(stage.warnings)}
        elif isinstance(stage, ConntrackRecord):
            yield {**base, "stage": "conntrack", "action": stage.ctstate, "note": stage.note}
        elif isinstance(stage, RouteRecord):
            yield {**base, "stage": "route", "destination": stage.destination,
                   "route": str(stage.route) if stage.route else None,
                   "action": stage.decision, "oif": stage.oif}
        elif isinstance(stage, MtuRecord):
            yield {**base, "stage": "mtu", "oif": stage.oif, "mtu": stage.mtu,
                   "length": stage.packet_length, "action": "fits" if stage.fits else "too-big"}
        elif isinstance(stage, NatRecord):
            yield {**base, "stage": "nat", "action": stage.kind,
                   "before": _packet(stage.before), "after": _packet(stage.after)}
        elif isinstance(stage, EncapRecord):
            yield {**base, "stage": "encap", "action": stage.mode, "outer": _packet(stage.outer),
                   "overhead": stage.overhead, "detail": stage.detail}
        elif isinstance(stage, DecapRecord):
            yield {**base, "stage": "decap", "action": stage.mode, "iif": stage.iif,
                   "inner": _packet(stage.inner)}
        elif isinstance(stage, DeliverRecord):
            yield {**base, "stage": "deliver", "action": "delivered", "where": stage.where,
                   "iface": stage.iface}
        elif isinstance(stage, DropRecord):
            yield {**base, "stage": "drop", "action": "dropped", "reason": stage.reason,
                   "detail": stage.detail}
