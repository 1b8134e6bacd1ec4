"""Find the iptables rules that decided a trace and map them back to Calico objects.

A drop is decided by one rule: the one whose verdict ended the traversal. An allowed packet is
decided by the policy or profile rules that set the accept mark in each endpoint chain the
packet went through (egress of the source, ingress of the destination), and by a failsafe rule
that accepted it before any host endpoint policy could judge it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tracer.dataplane.events import NetfilterEvent
from tracer.dataplane.ir import Provenance, SetMark, Table
from tracer.dataplane.events import felix_chain
from tracer.dataplane.iptables_save import format_rule
from tracer.policy.felix import mark_bits
from tracer.trace.result import Decision, PacketTrace

# Felix's chain-level comments, in every release we render (felix/rules/policy.go).
_POLICY_COMMENT = re.compile(
    r"^(?:Policy|KubernetesNetworkPolicy|NetworkPolicy|GlobalNetworkPolicy|"
    r"StagedNetworkPolicy|StagedGlobalNetworkPolicy|StagedKubernetesNetworkPolicy|"
    r"KubernetesClusterNetworkPolicy) (\S+) (ingress|egress)$")
_PROFILE_COMMENT = re.compile(r"^Profile (\S+) (ingress|egress)$")


@dataclass(frozen=True)
class EndpointChain:
    """An endpoint chain (cali-tw-* / cali-fw-*) the packet entered, on some node."""

    node: str
    chain: str
    endpoint: str | None               # "ns/pod" when the workload is known
    direction: str                     # ingress (to workload) | egress (from workload)


def decision_for(node: str, event: NetfilterEvent, dataplane) -> Decision:
    rule = event.rule
    provenance = rule.provenance if rule is not None else None
    if rule is not None and provenance is None:
        provenance = _provenance_from_comments(dataplane, node, event)
    return Decision(node=node, table=event.table, chain=event.chain,
                    rule_number=event.rule_number, rule=rule,
                    rule_text=format_rule(event.chain, rule) if rule is not None else None,
                    effect=event.effect, provenance=provenance)


def deciding_decisions(dataplane, trace: PacketTrace) -> tuple[Decision, ...]:
    drop = trace.drop
    if drop is not None:
        if drop.event is None:
            return ()
        return (decision_for(drop.node, drop.event, dataplane),)
    found: list[Decision] = []
    for node, event in trace.netfilter_events():
        rule = event.rule
        accept = mark_bits(dataplane.version, dataplane.cluster.felix_for(node)).accept
        if (event.kind == "rule" and rule is not None and isinstance(rule.target, SetMark)
                and rule.target.value & accept
                and felix_chain(event.chain).startswith(
                    ("cali-pi-", "cali-po-", "cali-pri-", "cali-pro-"))):
            found.append(decision_for(node, event, dataplane))
        elif (event.kind == "rule" and event.effect == "ACCEPT" and rule is not None
              and rule.provenance is not None and rule.provenance.role == "failsafe"):
            found.append(decision_for(node, event, dataplane))
    return tuple(found)


def endpoint_chains(dataplane, trace: PacketTrace) -> tuple[EndpointChain, ...]:
    by_iface = {ep.interface: ep.key for ep in dataplane.cluster.endpoints.values()}
    seen: list[EndpointChain] = []
    for node, event in trace.netfilter_events():
        name = felix_chain(event.chain)
        for prefix, direction in (("cali-tw-", "ingress"), ("cali-fw-", "egress")):
            if name.startswith(prefix):
                iface = name[len(prefix):]
                chain = EndpointChain(node, event.chain, by_iface.get(iface), direction)
                if chain not in seen:
                    seen.append(chain)
    return tuple(seen)


def policies_seen_in_dumps(dataplane, trace: PacketTrace) -> dict[str, tuple[str, ...]]:
    """For nodes whose rules came from a dump: the policies each endpoint chain jumped to,
    named by felix's chain comments ("ingress default/web" -> policy names)."""
    by_iface = {ep.interface: ep.key for ep in dataplane.cluster.endpoints.values()}
    seen: dict[str, list[str]] = {}
    for node, event in trace.netfilter_events():
        if dataplane.nodes[node].rendered or event.effect != "JUMP" or not event.target_chain:
            continue
        for prefix, direction in (("cali-tw-", "ingress"), ("cali-fw-", "egress")):
            if event.chain.startswith(prefix) and event.target_chain.startswith(
                    ("cali-pi-", "cali-po-")):
                key = f"{direction} {by_iface.get(event.chain[len(prefix):], event.chain)}"
                name = _chain_comment_name(dataplane, node, event) or event.target_chain
                seen.setdefault(key, [])
                if name not in seen[key]:
                    seen[key].append(name)
    return {key: tuple(names) for key, names in seen.items()}


def _chain_comment_name(dataplane, node: str, event: NetfilterEvent) -> str | None:
    chain = dataplane.nodes[node].ruleset.tables.get(
        Table._value2member_map_.get(event.table), {}).get(event.target_chain)
    if chain is None or not chain.rules:
        return None
    for comment in chain.rules[0].comments:
        match = _POLICY_COMMENT.match(comment)
        if match:
            return comment.rsplit(" ", 1)[0]
    return None


def _provenance_from_comments(dataplane, node: str, event: NetfilterEvent) -> Provenance | None:
    """For a user-supplied dump: the policy chain's first rule carries felix's chain comment."""
    table = Table._value2member_map_.get(event.table)    # not an iptables table: nftables'
    chain = dataplane.nodes[node].ruleset.tables.get(table, {}).get(event.chain)
    if chain is None or not chain.rules:
        return None
    for comment in chain.rules[0].comments:
        match = _POLICY_COMMENT.match(comment)
        if match:
            return Provenance(role="policy-rule", policy=match.group(1),
                              direction=match.group(2), source="comment in the dump")
        match = _PROFILE_COMMENT.match(comment)
        if match:
            return Provenance(role="profile-rule", profile=match.group(1),
                              direction=match.group(2), source="comment in the dump")
    return None


