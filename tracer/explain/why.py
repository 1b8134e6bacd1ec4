"""The plain-language *why* of a trace, and what to change.

The text names the endpoint chain that decided, the policies that select the endpoint in that
direction (that is what makes a default deny), the rule that matched, and the peer's labels.
"""

from __future__ import annotations

from tracer.diags.nodes import BUNDLE_ORIGIN
from tracer.dataplane.events import felix_chain
from tracer.dataplane.packet import Packet
from tracer.protocols import ICMP
from tracer.dataplane.reasons import DropReason
from tracer.dataplane.trace import DropRecord, HookRecord
from tracer.explain.deciding import EndpointChain, policies_seen_in_dumps
from tracer.explain.hint import applied_policies, fix_hint
from tracer.explain.rules import describe_rule
from tracer.policy.evaluate import DirectionDecision, Flow, evaluate_direction
from tracer.trace.result import Decision, PacketTrace
from tracer.selector.selector import parse_selector


def flow_of(packet: Packet) -> Flow:
    return Flow(src_ip=packet.src, dst_ip=packet.dst, protocol=packet.protocol,
                src_port=packet.sport, dst_port=packet.dport,
                icmp_type=packet.icmp_type if packet.protocol == ICMP else None,
                icmp_code=packet.icmp_code if packet.protocol == ICMP else None)


def compose(dataplane, trace: PacketTrace, decisions: tuple[Decision, ...],
            chains: tuple[EndpointChain, ...]):
    cluster = dataplane.cluster
    flow = flow_of(_policy_view(trace))
    verdicts: list[DirectionDecision] = []
    for chain in chains:
        if chain.endpoint is not None and _from_manifests(cluster, chain.endpoint):
            verdicts.append(evaluate_direction(cluster, chain.endpoint, chain.direction, flow,
                                               index=dataplane.policy_index))
    staged = tuple(outcome.describe() for v in verdicts for outcome in v.staged)
    selected_by = {f"{v.direction} {v.endpoint}": v.applied_policies for v in verdicts}
    from_dumps = policies_seen_in_dumps(dataplane, trace)
    selected_by.update(from_dumps)
    drop = trace.drop
    caveat = _traversal_caveats(trace)
    if drop is None:
        why = _why_allowed(trace, verdicts, decisions) + caveat
        return why, "", staged, selected_by
    why = _why_dropped(cluster, trace, drop, decisions, verdicts) + caveat
    deciding_chain = decisions[0].chain if decisions else ""
    for key, names in sorted(from_dumps.items()):
        if drop.reason is DropReason.DEFAULT_DENY and key in _chain_keys(chains, deciding_chain):
            why += (f" From the node's dump: {key} went through {', '.join(names)}; none of "
                    "them set the accept mark.")
    hint = fix_hint(cluster, trace, drop, verdicts, flow)
    return why, hint, staged, selected_by


def _from_manifests(cluster, key: str) -> bool:
    """A workload known only from a diags bundle's routes has no labels or policies to
    evaluate: its verdict is the dump's alone."""
    endpoint = cluster.endpoints.get(key)
    return endpoint is not None and endpoint.pod.origin.kind != BUNDLE_ORIGIN


def _traversal_caveats(trace: PacketTrace) -> str:
    """What the rule walk assumed (absent chains of a partial dump, IPVS matches), since the
    verdict rests on it."""
    said = dict.fromkeys(warning for hop in trace.hops for stage in hop.stages
                         if isinstance(stage, HookRecord) for warning in stage.warnings)
    return "".join(f" Assumed: {warning}." for warning in said)


def _chain_keys(chains: tuple[EndpointChain, ...], chain: str) -> set[str]:
    return {f"{c.direction} {c.endpoint}" for c in chains if c.chain == chain}


def _policy_view(trace: PacketTrace) -> Packet:
    """The packet as the endpoint chains saw it: after DNAT (a Service's backend address)."""
    for hop in trace.hops:
        for stage in hop.stages:
            if isinstance(stage, HookRecord) and stage.hook == "FORWARD":
                return stage.packet
    return trace.packet


def _why_allowed(trace: PacketTrace, verdicts: list[DirectionDecision],
                 decisions: tuple[Decision, ...]) -> str:
    parts = [f"{trace.source} reached {trace.delivered_to}."]
    for v in verdicts:
        parts.append(_direction_sentence(v))
    # Host endpoint chains (cali-fh-*, cali-th-*) are no workload's: their deciding rules say
    # what let the packet through.
    failsafe = [d for d in decisions if d.provenance and d.provenance.role == "failsafe"]
    host_policy = [d for d in decisions if d.provenance and d.provenance.policy
                   and felix_chain(d.chain).startswith("cali-p")] if _host_endpoint_only(trace) else []
    for d in failsafe:
        parts.append(f"Accepted on {d.node} by {d.table}/{d.chain} rule {d.rule_number}: a "
                     "failsafe port, open before any host endpoint policy is consulted.")
    for d in host_policy if not verdicts else ():
        prov = d.provenance
        parts.append(f"Allowed on {d.node} by {prov.policy_kind or 'policy'} {prov.policy} "
                     f"{prov.direction} rule {prov.rule_index}, a host endpoint policy.")
    if not verdicts and not failsafe and not host_policy:
        parts.append("No workload endpoint chain was involved, so no Calico policy applied.")
    return " ".join(parts)


def _host_endpoint_only(trace: PacketTrace) -> bool:
    """The packet went through a host endpoint's chains and no workload's."""
    chains = {felix_chain(event.chain) for _, event in trace.netfilter_events()}
    return (any(c.startswith(("cali-fh-", "cali-th-", "cali-fhfw-", "cali-thfw-")) for c in chains)
            and not any(c.startswith(("cali-tw-", "cali-fw-")) for c in chains))


def _direction_sentence(v: DirectionDecision) -> str:
    side = "Egress from" if v.direction == "egress" else "Ingress to"
    if v.reason == "profile-allow":
        if v.applied_policies:
            return (f"{side} {v.endpoint}: the selecting policies passed it on and profile "
                    f"{v.profile} allows it.")
        return (f"{side} {v.endpoint}: no policy selects it for {v.direction}, so its "
                f"namespace profile {v.profile} allows everything.")
    if v.deciding is not None:
        verb = "allowed" if v.allowed else "denied"
        return f"{side} {v.endpoint}: {verb} by {v.deciding.describe()}."
    return f"{side} {v.endpoint}: {v.summary()}."


def _why_dropped(cluster, trace: PacketTrace, drop: DropRecord,
                 decisions: tuple[Decision, ...], verdicts: list[DirectionDecision]) -> str:
    where = f"Dropped on {drop.node}"
    if decisions:
        d = decisions[0]
        where += f" by {d.table}/{d.chain} rule {d.rule_number}"
    deciding = next((v for v in verdicts if not v.allowed), None)
    if drop.reason is DropReason.DEFAULT_DENY and deciding is not None:
        what = (f"no profile of {deciding.endpoint} accepted it"
                if deciding.reason == "no-profile" else
                f"end of tier {deciding.tier}, no policy allowed it")
        sentences = [f"{where} ({what}).",
                     _default_deny_sentence(cluster, deciding, trace)]
    elif drop.reason is DropReason.HOST_ENDPOINT and decisions and decisions[0].provenance:
        sentences = [f"{where}: {drop.reason.text}.",
                     _host_endpoint_sentence(cluster, decisions[0])]
    elif drop.reason is DropReason.DENIED_BY_RULE and deciding is not None and deciding.deciding:
        rule = _rule_of(cluster, deciding)
        text = describe_rule(rule, deciding.direction) if rule else ""
        sentences = [f"{where}: {deciding.deciding.describe()} matched ({text})."]
    else:
        sentences = [f"{where}: {drop.reason.text}."]
        if drop.event is None:
            sentences.append(drop.detail + ".")
    if deciding is not None and deciding.staged:
        sentences.append("Staged: " + "; ".join(s.describe() for s in deciding.staged) + ".")
    return " ".join(sentences)


def _default_deny_sentence(cluster, v: DirectionDecision, trace: PacketTrace) -> str:
    peer = trace.src if v.direction == "ingress" else trace.dst
    if not v.applied_policies:
        return f"No policy selects {v.endpoint} for {v.direction} and no profile allows it."
    lines = []
    for policy in applied_policies(cluster, v):
        if policy.tier != v.tier:
            continue                   # earlier tiers passed it on; they did not decide
        rules = [describe_rule(r, v.direction) for r in policy.rules(v.direction)
                 if r.action == "Allow"]
        allows = "; ".join(rules) if rules else "nothing (no rules: a default deny)"
        lines.append(f"{policy.kind} {policy.key} (tier {policy.tier}), which allows "
                     f"{v.direction} only {allows}" if rules else
                     f"{policy.kind} {policy.key} (tier {policy.tier}), which allows {allows}")
    peer_labels = _peer_labels(cluster, peer)
    passed = " ".join(f"{ref.describe()} passed it to the next tier." for ref in v.passes)
    selected = f"{v.endpoint} is selected for {v.direction} by " + "; ".join(lines) + "."
    side = "from" if v.direction == "ingress" else "to"
    unmatched = (f"{_policy_view(trace).describe()} {side} {peer.label}{peer_labels} matches "
                 "none of them.")
    return " ".join(part for part in (passed, selected, unmatched) if part)


def _host_endpoint_sentence(cluster, decision: Decision) -> str:
    """Which policies select the host endpoint whose chain dropped the packet."""
    prov = decision.provenance
    name = (prov.endpoint or "").removeprefix("hostendpoint/")
    hep = next((h for h in cluster.host_endpoints if h.name == name), None)
    if hep is None:
        return ""
    direction = ("egress" if felix_chain(decision.chain).startswith(("cali-th-", "cali-thfw-"))
                 else "ingress")
    selecting = [p for p in cluster.policies if not p.staged and direction in p.types
                 and parse_selector(p.selector).matches(hep.labels)]
    if not selecting:
        return (f"Host endpoint {hep.name} ({hep.interface_name} on {hep.node}) has no "
                f"{direction} policy and no profile allows it.")
    described = "; ".join(
        f"{p.kind} {p.key}, which allows {direction} only " +
        (", ".join(describe_rule(r, direction) for r in p.rules(direction)
                   if r.action == "Allow") or "nothing")
        for p in selecting)
    return (f"Host endpoint {hep.name} ({hep.interface_name} on {hep.node}) is selected for "
            f"{direction} by {described}. Felix's failsafe ports stay open regardless.")


def _peer_labels(cluster, place) -> str:
    if place.endpoint is None:
        return ""
    labels = {k: v for k, v in place.endpoint.pod.labels.items()}
    if not labels:
        return " (no labels)"
    return " (" + ", ".join(f"{k}={v}" for k, v in sorted(labels.items())) + ")"


def _rule_of(cluster, v: DirectionDecision):
    ref = v.deciding
    for policy in cluster.policies:
        if policy.key == ref.policy_key and policy.kind == ref.policy_kind:
            rules = policy.rules(ref.direction)
            return rules[ref.rule_index] if ref.rule_index < len(rules) else None
    return None
