"""Text renderings of a :class:`PacketTrace`: prune for the verbosity level, then print.

As ovn-trace does, the work is two passes. :func:`prune` turns the trace into a small tree of
lines holding only what the level shows; :func:`print_tree` is the one printer (indentation,
blank lines between blocks) for every level:

* ``detailed``: every table and every matched rule with its iptables-save text and marks;
* ``summary``: the chains entered per hook, the route, the framing and the verdict;
* ``minimal``: only what changed the packet (NAT, tunnels) and where it ended — stable across
  chain refactors, so golden tests use it (STYLE pattern 7).
"""

from __future__ import annotations

from dataclasses import dataclass

from tracer.dataplane.events import NetfilterEvent
from tracer.dataplane.iptables_save import format_rule
from tracer.dataplane.trace import (ConntrackRecord, DecapRecord, DeliverRecord, DropRecord,
                                    EncapRecord, HookRecord, Hop, MtuRecord, NatRecord,
                                    RouteRecord)
from tracer.trace.result import PacketTrace

VERBOSITIES = ("minimal", "summary", "detailed")

# Stages that change the packet or end it: the only ones the minimal level keeps.
CHANGES = (NatRecord, EncapRecord, DecapRecord, DropRecord, DeliverRecord)


@dataclass(frozen=True)
class Line:
    """One printed line and the lines nested under it, ``step`` columns further in."""

    text: str
    children: tuple[Line, ...] = ()
    step: int = 2


Block = tuple[Line, ...]               # printed with a blank line between blocks


def render_text(trace: PacketTrace, verbosity: str = "detailed") -> str:
    return print_tree(prune(trace, verbosity))


def prune(trace: PacketTrace, verbosity: str) -> tuple[Block, ...]:
    """The lines ``verbosity`` shows, as blocks: header, one per hop, verdict (minimal: one)."""
    if verbosity not in VERBOSITIES:
        raise ValueError(f"verbosity {verbosity!r} is not one of {VERBOSITIES}")
    if verbosity == "minimal":
        changes = tuple(Line(f"{stage.node}: {change_text(stage)}") for hop in trace.hops
                        for stage in hop.stages if isinstance(stage, CHANGES))
        return (changes + _verdict(trace, verbosity),)
    return (_header(trace), *(_hop(hop, verbosity) for hop in trace.hops),
            _verdict(trace, verbosity))


def print_tree(blocks: tuple[Block, ...]) -> str:
    out: list[str] = []
    for block in blocks:
        for line in block:
            _print(line, 0, out)
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def _print(line: Line, indent: int, out: list[str]) -> None:
    out.append(" " * indent + line.text)
    for child in line.children:
        _print(child, indent + line.step, out)


def _header(trace: PacketTrace) -> Block:
    return (Line(f"Packet  {trace.packet.describe()}"),
            Line(f"From    {trace.source}"),
            Line(f"To      {trace.destination}"),
            Line("Assuming " + "; ".join(trace.assumptions)))


def _hop(hop: Hop, verbosity: str) -> Block:
    arrived = f"arrived on {hop.iif}" if hop.iif else "sent by the node itself"
    stages = tuple(line for stage in hop.stages
                   if (line := _stage(stage, verbosity)) is not None)
    return (Line(f"{hop.node}  ({arrived}: {hop.packet.describe()})", stages),)


def _stage(stage, verbosity: str) -> Line | None:
    if isinstance(stage, HookRecord):
        return _hook(stage, verbosity)
    if isinstance(stage, CHANGES):
        return Line(change_text(stage))
    if isinstance(stage, ConntrackRecord):
        note = f" ({stage.note})" if stage.note else ""
        return Line(f"conntrack: {stage.ctstate}{note}")
    if isinstance(stage, RouteRecord):
        route = str(stage.route) if stage.route else "none"
        return Line(f"route {stage.destination}: {route} -> {stage.decision}")
    if isinstance(stage, MtuRecord):
        fits = "fits" if stage.fits else "TOO BIG"
        return Line(f"mtu: {stage.packet_length} bytes on {stage.oif} (MTU {stage.mtu}): {fits}")
    return None


def _hook(record: HookRecord, verbosity: str) -> Line:
    head = f"{record.table} {record.hook}  {marks_text(record)}  => {record.verdict}"
    if verbosity == "summary":
        chains = chains_entered(record)
        children = (Line(" > ".join(chains)),) if chains else ()
    else:
        children = tuple(Line(event_text(event)) for event in record.events)
    warnings = tuple(Line(f"! {warning}") for warning in record.warnings)
    return Line(head, children + warnings, step=4)


def marks_text(record: HookRecord) -> str:
    return f"mark {record.mark_before:#x}" + (
        f" -> {record.mark_after:#x}" if record.mark_after != record.mark_before else "")


def chains_entered(record: HookRecord) -> list[str]:
    """The chains a table traversal passed through, in the order first entered."""
    chains: list[str] = []
    for event in record.events:
        if event.chain not in chains:
            chains.append(event.chain)
    return chains


def event_text(event: NetfilterEvent) -> str:
    if event.kind == "policy":
        return f"{event.chain}: policy {event.effect}"
    if event.kind == "return":
        return f"{event.chain}: end of chain, return"
    text = format_rule(event.chain, event.rule).split(" ", 2)[-1] if event.rule else ""
    mark = (f"  [mark {event.mark_before:#x} -> {event.mark_after:#x}]"
            if event.mark_after != event.mark_before else "")
    target = f" {event.target_chain}" if event.target_chain else ""
    return f"{event.chain} #{event.rule_number}: {text}  => {event.effect}{target}{mark}"


def change_text(stage) -> str:
    """A stage that changed or ended the packet, in one line."""
    if isinstance(stage, NatRecord):
        return f"{stage.kind}: {stage.before.describe()}  ->  {stage.after.describe()}"
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


def verdict_text(trace: PacketTrace) -> str:
    if trace.verdict == "allowed":
        return f"allowed: delivered to {trace.delivered_to}"
    return f"dropped [{trace.reason}]"


def _verdict(trace: PacketTrace, verbosity: str) -> Block:
    if verbosity == "minimal":
        return (Line(f"VERDICT  {verdict_text(trace)}"),)
    details: list[Line] = []
    for decision in trace.deciding:
        prov = (Line(provenance_text(decision.provenance)),) if decision.provenance else ()
        details.append(Line(f"decided by {decision.node} {decision.table}/{decision.chain} "
                            f"rule {decision.rule_number}: {decision.rule_text or ''}", prov))
    for key, policies in sorted(trace.selected_by.items()):
        shown = ", ".join(policies) if policies else "no policy (profiles decide)"
        details.append(Line(f"{key} selected by: {shown}"))
    details += [Line(f"staged: {line}") for line in trace.staged]
    block = [Line(f"VERDICT  {verdict_text(trace)}", tuple(details))]
    if trace.why:
        block.append(Line(f"WHY      {trace.why}"))
    if trace.hint:
        block.append(Line(f"FIX      {trace.hint}"))
    return tuple(block)


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
