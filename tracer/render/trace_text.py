"""Text renderings of a :class:`PacketTrace`, as separate prune-then-print passes.

* ``detailed``: every table and every matched rule with its iptables-save text and marks;
* ``summary``: the chains entered per hook, the route, the framing and the verdict;
* ``minimal``: only what changed the packet (NAT, tunnels) and where it ended — stable across
  chain refactors, so golden tests use it (STYLE pattern 7).
"""

from __future__ import annotations

from tracer.dataplane.events import NetfilterEvent
from tracer.dataplane.iptables_save import format_rule
from tracer.dataplane.trace import (ConntrackRecord, DecapRecord, DeliverRecord, DropRecord,
                                    EncapRecord, HookRecord, MtuRecord, NatRecord, RouteRecord)
from tracer.trace.result import PacketTrace

VERBOSITIES = ("minimal", "summary", "detailed")


def render_text(trace: PacketTrace, verbosity: str = "detailed") -> str:
    lines: list[str] = []
    if verbosity != "minimal":
        lines += _header(trace)
    for hop in trace.hops:
        arrived = f"arrived on {hop.iif}" if hop.iif else "sent by the node itself"
        if verbosity != "minimal":
            lines.append(f"{hop.node}  ({arrived}: {hop.packet.describe()})")
        for stage in hop.stages:
            lines += _stage(stage, verbosity)
        if verbosity != "minimal":
            lines.append("")
    lines += _verdict(trace, verbosity)
    return "\n".join(lines).rstrip() + "\n"


def _header(trace: PacketTrace) -> list[str]:
    return [f"Packet  {trace.packet.describe()}",
            f"From    {trace.source}",
            f"To      {trace.destination}",
            "Assuming " + "; ".join(trace.assumptions), ""]


def _stage(stage, verbosity: str) -> list[str]:
    if isinstance(stage, HookRecord):
        return _hook(stage, verbosity)
    if isinstance(stage, (NatRecord, EncapRecord, DecapRecord, DropRecord, DeliverRecord)):
        return ["  " + _change(stage)] if verbosity != "minimal" else [_minimal(stage)]
    if verbosity == "minimal":
        return []
    if isinstance(stage, ConntrackRecord):
        note = f" ({stage.note})" if stage.note else ""
        return [f"  conntrack: {stage.ctstate}{note}"]
    if isinstance(stage, RouteRecord):
        route = str(stage.route) if stage.route else "none"
        return [f"  route {stage.destination}: {route} -> {stage.decision}"]
    if isinstance(stage, MtuRecord):
        fits = "fits" if stage.fits else "TOO BIG"
        return [f"  mtu: {stage.packet_length} bytes on {stage.oif} (MTU {stage.mtu}): {fits}"]
    return []


def _hook(record: HookRecord, verbosity: str) -> list[str]:
    if verbosity == "minimal":
        return []
    marks = f"mark {record.mark_before:#x}" + (
        f" -> {record.mark_after:#x}" if record.mark_after != record.mark_before else "")
    head = f"  {record.table} {record.hook}  {marks}  => {record.verdict}"
    if verbosity == "summary":
        chains = []
        for event in record.events:
            if event.chain not in chains:
                chains.append(event.chain)
        lines = [head, "      " + " > ".join(chains)] if chains else [head]
    else:
        lines = [head] + [f"      {_event(event)}" for event in record.events]
    return lines + [f"      ! {warning}" for warning in record.warnings]


def _event(event: NetfilterEvent) -> str:
    if event.kind == "policy":
        return f"{event.chain}: policy {event.effect}"
    if event.kind == "return":
        return f"{event.chain}: end of chain, return"
    text = format_rule(event.chain, event.rule).split(" ", 2)[-1] if event.rule else ""
    mark = (f"  [mark {event.mark_before:#x} -> {event.mark_after:#x}]"
            if event.mark_after != event.mark_before else "")
    target = f" {event.target_chain}" if event.target_chain else ""
    return f"{event.chain} #{event.rule_number}: {text}  => {event.effect}{target}{mark}"


def _change(stage) -> str:
    if isinstance(stage, NatRecord):
        return (f"{stage.kind}: {stage.before.describe()}  ->  {stage.after.describe()}")
    if isinstance(stage, EncapRecord):
        return (f"encap {stage.mode}: {stage.outer.describe()} (+{stage.overhead} bytes; "
                f"{stage.detail})")
    if isinstance(stage, DecapRecord):
        return f"decap {stage.mode} on {stage.iif}: inner {stage.inner.describe()}"
    if isinstance(stage, DropRecord):
        return f"DROP [{stage.reason}] {stage.detail}"
    if isinstance(stage, DeliverRecord):
        via = f" via {stage.iface}" if stage.iface else ""
        return f"delivered to {stage.where}{via}"
    raise TypeError(stage)


def _minimal(stage) -> str:
    return f"{stage.node}: {_change(stage)}"


def _verdict(trace: PacketTrace, verbosity: str) -> list[str]:
    lines = []
    if trace.verdict == "allowed":
        lines.append(f"VERDICT  allowed: delivered to {trace.delivered_to}")
    else:
        lines.append(f"VERDICT  dropped [{trace.reason}]")
    if verbosity == "minimal":
        return lines
    for decision in trace.deciding:
        lines.append(f"  decided by {decision.node} {decision.table}/{decision.chain} "
                     f"rule {decision.rule_number}: {decision.rule_text or ''}")
        prov = decision.provenance
        if prov is not None:
            lines.append("    " + provenance_text(prov))
    for key, policies in sorted(trace.selected_by.items()):
        shown = ", ".join(policies) if policies else "no policy (profiles decide)"
        lines.append(f"  {key} selected by: {shown}")
    for line in trace.staged:
        lines.append(f"  staged: {line}")
    if trace.why:
        lines.append(f"WHY      {trace.why}")
    if trace.hint:
        lines.append(f"FIX      {trace.hint}")
    return lines


def provenance_text(prov) -> str:
    parts = []
    if prov.policy:
        parts.append(f"{prov.policy_kind or 'policy'} {prov.policy}")
    if prov.profile:
        parts.append(f"profile {prov.profile}")
    if prov.tier:
        parts.append(f"tier {prov.tier}")
    if prov.direction:
        parts.append(prov.direction)
    if prov.rule_index is not None:
        parts.append(f"rule {prov.rule_index}")
    if prov.endpoint:
        parts.append(f"endpoint {prov.endpoint}")
    parts.append(f"({prov.role}" + (f", {prov.source})" if prov.source else ")"))
    return ", ".join(parts[:-1]) + " " + parts[-1] if len(parts) > 1 else parts[0]
