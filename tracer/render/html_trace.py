"""``packet --output html``: a trace as a page a person would rather look at than read.

Top: a diagram of the path (the source, its veth, each node's pipeline with its hooks and
tables as chips, the tunnel, the underlay, the destination), the hop where the verdict fell
outlined. Each node box links to its hop below, which expands to the chains and rules matched,
with the mark before and after each. The deciding rule is highlighted and linked to its policy,
whose YAML is shown; then the why and the fix hint.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from tracer.dataplane.trace import (ConntrackRecord, DecapRecord, DeliverRecord, DropRecord,
                                    EncapRecord, HookRecord, Hop, MtuRecord, NatRecord,
                                    RouteRecord)
from tracer.model.cluster import Cluster
from tracer.render.html_page import page, slug
from tracer.render.sources import PolicySource, policy_key, policy_sources
from tracer.render.trace_text import (change_text, event_text, marks_text, provenance_text,
                                      verdict_text)
from tracer.trace.result import Decision, PacketTrace

HOOK_SHORT = {"PREROUTING": "PRE", "INPUT": "IN", "FORWARD": "FWD", "OUTPUT": "OUT",
              "POSTROUTING": "POST"}


@dataclass(frozen=True)
class Box:
    """One element of the path diagram."""

    kind: str                          # endpoint, veth, node, tunnel, underlay
    title: str
    detail: str = ""
    hop: int | None = None             # node boxes: index of their hop
    verdict: str = ""                  # "drop" or "deliver" on the box where the verdict fell


def render_trace_html(trace: PacketTrace, cluster: Cluster) -> str:
    """One trace as a whole page."""
    sources = policy_sources(cluster, [trace])
    title = f"{trace.source} -> {trace.destination}: {verdict_text(trace)}"
    return page(title, trace_section(trace, sources, "t") + sources_section(sources))


def render_traces_html(sections: list[tuple[str, PacketTrace]], cluster: Cluster,
                       title: str) -> str:
    """Several traces (a Service's forks) on one page, each under its heading."""
    sources = policy_sources(cluster, [trace for _, trace in sections])
    body = [f"<h1>{escape(title)}</h1>"]
    for i, (heading, trace) in enumerate(sections):
        body.append(f"<h2>{escape(heading)}</h2>")
        body.append(trace_section(trace, sources, f"f{i}", level=3))
    return page(title, "\n".join(body) + sources_section(sources))


def path_boxes(trace: PacketTrace) -> list[Box]:
    """The diagram, left to right: where the packet was, in order."""
    boxes = [Box("endpoint", trace.source, trace.src.kind + " " + str(trace.src.ip))]
    previous: Hop | None = None
    for index, hop in enumerate(trace.hops):
        if previous is None:
            if hop.iif and trace.src.kind == "pod":
                boxes.append(Box("veth", hop.iif, "the pod's veth, host side"))
        elif previous.node != hop.node:
            encap = next((s for s in previous.stages if isinstance(s, EncapRecord)), None)
            boxes.append(Box("underlay", f"underlay {previous.node} \u2192 {hop.node}",
                             (encap.outer if encap else hop.packet).describe()))
        else:                           # back in the same node: decapsulated
            decap = next((s for s in previous.stages if isinstance(s, DecapRecord)), None)
            if decap is not None:
                boxes.append(Box("tunnel", f"decap {decap.mode} on {decap.iif}",
                                 decap.inner.describe()))
        last = hop.stages[-1] if hop.stages else None
        verdict = ("drop" if isinstance(last, DropRecord) else
                   "deliver" if isinstance(last, DeliverRecord) else "")
        arrived = f"arrived on {hop.iif}" if hop.iif else "sent by the node itself"
        boxes.append(Box("node", hop.node, arrived, hop=index, verdict=verdict))
        for stage in hop.stages:
            if isinstance(stage, EncapRecord):
                boxes.append(Box("tunnel", f"encap {stage.mode}",
                                 f"+{stage.overhead} bytes: {stage.outer.describe()}"))
        if isinstance(last, DeliverRecord):
            if last.iface and last.iface.startswith("cali"):
                boxes.append(Box("veth", last.iface, "the pod's veth, host side"))
            boxes.append(Box("endpoint", last.where, last.packet.describe()))
        previous = hop
    return boxes


def stage_chip(stage) -> tuple[str, str] | None:
    """A stage's short label in a node box, and its class."""
    if isinstance(stage, HookRecord):
        return (f"{stage.table} {HOOK_SHORT.get(stage.hook, stage.hook)}",
                "drop" if stage.verdict in ("DROP", "REJECT") else "")
    if isinstance(stage, ConntrackRecord):
        return f"ct {stage.ctstate}", "drop" if stage.ctstate == "INVALID" else ""
    if isinstance(stage, RouteRecord):
        return f"route {stage.decision}", ""
    if isinstance(stage, MtuRecord):
        return f"mtu {stage.mtu}", "" if stage.fits else "drop"
    if isinstance(stage, NatRecord):
        return stage.kind, ""
    if isinstance(stage, (EncapRecord, DecapRecord)):
        return f"{'encap' if isinstance(stage, EncapRecord) else 'decap'} {stage.mode}", ""
    if isinstance(stage, DropRecord):
        return f"DROP {stage.reason}", "drop"
    if isinstance(stage, DeliverRecord):
        return "deliver", ""
    return None


def trace_section(trace: PacketTrace, sources: dict[str, PolicySource], prefix: str, *,
                  level: int = 1) -> str:
    """The diagram, the hops and the verdict of one trace (ids prefixed with ``prefix``)."""
    h = f"h{level}"
    out = [f"<section class=\"trace\" data-verdict=\"{trace.verdict}\">",
           f"<{h}>{escape(trace.source)} \u2192 {escape(trace.destination)} "
           f"<span class=\"badge {trace.verdict}\">{escape(verdict_text(trace))}</span></{h}>",
           f"<div class=\"mono\">{escape(trace.packet.describe())}</div>",
           "<div class=\"muted\">Assuming " + escape("; ".join(trace.assumptions)) + "</div>",
           "<div class=\"path\" role=\"list\">"]
    boxes = path_boxes(trace)
    for i, box in enumerate(boxes):
        if i:
            out.append("<span class=\"arrow\">\u2192</span>")
        out.append(_box_html(box, trace, prefix))
    out.append("</div>")
    out.append(_verdict_html(trace, sources))
    out.append("<div class=\"hops\">")
    for index, hop in enumerate(trace.hops):
        out.append(_hop_html(hop, index, trace, sources, prefix))
    out.append("</div></section>")
    return "\n".join(out)


def _box_html(box: Box, trace: PacketTrace, prefix: str) -> str:
    classes = f"box {box.kind}" + (f" verdict-{box.verdict}" if box.verdict else "")
    inner = (f"<div class=\"kind\">{escape(box.kind)}</div>"
             f"<div class=\"title\">{escape(box.title)}</div>"
             f"<div class=\"detail\">{escape(box.detail)}</div>")
    if box.hop is None:
        return f"<div class=\"{classes}\" role=\"listitem\">{inner}</div>"
    chips = [chip for stage in trace.hops[box.hop].stages if (chip := stage_chip(stage))]
    inner += "<div class=\"chips\">" + "".join(
        f"<span class=\"chip {cls}\">{escape(text)}</span>" for text, cls in chips) + "</div>"
    return (f"<a class=\"{classes}\" role=\"listitem\" href=\"#{prefix}-hop-{box.hop}\" "
            f"data-hop=\"{box.hop}\">{inner}</a>")


def _hop_html(hop: Hop, index: int, trace: PacketTrace, sources: dict[str, PolicySource],
              prefix: str) -> str:
    arrived = f"arrived on {hop.iif}" if hop.iif else "sent by the node itself"
    last = hop.stages[-1] if hop.stages else None
    end = (f" \u2014 <b>{escape(change_text(last))}</b>"
           if isinstance(last, (DropRecord, DeliverRecord)) else "")
    out = [f"<details class=\"hop\" id=\"{prefix}-hop-{index}\">",
           f"<summary><b>{escape(hop.node)}</b> ({escape(arrived)}: "
           f"<span class=\"mono\">{escape(hop.packet.describe())}</span>){end}</summary>"]
    for stage in hop.stages:
        out.append("<div class=\"stage\">" + _stage_html(stage, hop, trace, sources) + "</div>")
    out.append("</details>")
    return "\n".join(out)


def _stage_html(stage, hop: Hop, trace: PacketTrace, sources) -> str:
    if isinstance(stage, HookRecord):
        head = (f"<div class=\"stage-head\">{escape(stage.table)} {escape(stage.hook)} "
                f"<span class=\"mono\">{escape(marks_text(stage))}</span> \u21d2 "
                f"{escape(stage.verdict)}</div>")
        rows = ["<table class=\"rules\"><tr><th>chain #rule</th><th>rule</th><th>effect</th>"
                "<th>mark before \u2192 after</th></tr>"]
        for event in stage.events:
            decision = _deciding(trace, hop.node, event)
            text = event_text(event)
            where, _, rest = text.partition(": ")
            rule, _, effect = rest.rpartition("  => ")
            if not rule:
                rule, effect = rest, ""
            cell = escape(rule)
            if decision is not None and decision.provenance is not None:
                cell += "<br>" + _policy_link(decision, sources)
            rows.append(f"<tr class=\"rule{' deciding' if decision else ''}\">"
                        f"<td class=\"mono\">{escape(where)}</td><td class=\"mono\">{cell}</td>"
                        f"<td>{escape(effect.split('  [')[0])}</td>"
                        f"<td class=\"mono\">{event.mark_before:#x} \u2192 "
                        f"{event.mark_after:#x}</td></tr>")
        rows.append("</table>")
        return head + "".join(rows)
    if isinstance(stage, ConntrackRecord):
        note = f" ({stage.note})" if stage.note else ""
        return f"conntrack: <b>{escape(stage.ctstate)}</b>{escape(note)}"
    if isinstance(stage, RouteRecord):
        route = str(stage.route) if stage.route else "none"
        return (f"route {escape(stage.destination)}: <span class=\"mono\">{escape(route)}</span>"
                f" \u2192 {escape(stage.decision)}")
    if isinstance(stage, MtuRecord):
        fits = "fits" if stage.fits else "<b>TOO BIG</b>"
        return (f"mtu: {stage.packet_length} bytes on {escape(stage.oif)} "
                f"(MTU {stage.mtu}): {fits}")
    if isinstance(stage, (NatRecord, EncapRecord, DecapRecord, DropRecord, DeliverRecord)):
        return f"<b>{escape(change_text(stage))}</b>"
    return ""


def _deciding(trace: PacketTrace, node: str, event) -> Decision | None:
    for decision in trace.deciding:
        if (decision.node, decision.table, decision.chain, decision.rule_number) == (
                node, event.table, event.chain, event.rule_number) and event.kind == "rule":
            return decision
    return None


def _policy_link(decision: Decision, sources: dict[str, PolicySource]) -> str:
    prov = decision.provenance
    text = escape(provenance_text(prov))
    if prov.policy and policy_key(prov) in sources:
        return (f"<a class=\"policy-link\" href=\"#policy-{slug(policy_key(prov))}\">"
                f"{text}</a>")
    return f"<span class=\"muted\">{text}</span>"


def _verdict_html(trace: PacketTrace, sources: dict[str, PolicySource]) -> str:
    out = ["<div class=\"verdict\">"]
    for decision in trace.deciding:
        link = _policy_link(decision, sources) if decision.provenance else ""
        out.append(f"<div>Decided by {escape(decision.node)} "
                   f"<span class=\"mono\">{escape(decision.table)}/{escape(decision.chain)} "
                   f"rule {decision.rule_number}</span> {link}</div>")
    for key, policies in sorted(trace.selected_by.items()):
        shown = ", ".join(policies) if policies else "no policy (profiles decide)"
        out.append(f"<div class=\"muted\">{escape(key)} selected by: {escape(shown)}</div>")
    for line in trace.staged:
        out.append(f"<div class=\"muted\">staged: {escape(line)}</div>")
    if trace.why:
        out.append(f"<p class=\"why\"><b>Why</b> {escape(trace.why)}</p>")
    if trace.hint:
        out.append(f"<p class=\"fix\"><b>Fix</b> {escape(trace.hint)}</p>")
    out.append("</div>")
    return "\n".join(out)


def sources_section(sources: dict[str, PolicySource]) -> str:
    if not sources:
        return ""
    out = ["<h2>Policies that decided</h2>"]
    for key, source in sorted(sources.items()):
        out.append(f"<div class=\"policy\" id=\"policy-{slug(key)}\"><h3>{escape(key)}</h3>"
                   f"<div class=\"muted\">{escape(source.file)}</div>"
                   f"<pre>{escape(source.text)}</pre></div>")
    return "\n".join(out)
