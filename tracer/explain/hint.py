"""The smallest change that would let a dropped packet through.

For a default deny, every Allow rule of the policies that select the endpoint is compared
with the packet aspect by aspect (protocol, port, peer labels, peer namespace, nets); the rule
missing the fewest aspects gives the hint. Label fixes are read off the selector's syntax tree:
an equality or ``has()`` term the peer fails names the label to add.
"""

from __future__ import annotations

from dataclasses import dataclass

from tracer.dataplane.reasons import DropReason
from tracer.dataplane.trace import DropRecord
from tracer.model.cluster import Policy, Rule
from tracer.policy.evaluate import DirectionDecision, Flow, policy_label, protocol_number
from tracer.selector.selector import parse_selector
from tracer.protocols import PORTED
from tracer.selector.syntax import EQ, And, Compare, Has, InSet, canonical_text, evaluate
from tracer.trace.result import PacketTrace

NAMESPACE_LABEL = "projectcalico.org/namespace"

# What to change, per reason; policy drops get a hint computed from the policies instead.
STATIC_HINTS: dict[DropReason, str] = {
    DropReason.RPF_CHECK: (
        "The pod sends with a source address that does not route back through its own interface. "
        "If that is intended, annotate the pod with cni.projectcalico.org/allowedSourcePrefixes."),
    DropReason.MTU_EXCEEDED: (
        "Send smaller packets (lower the MSS / MTU of the sender) or raise the host MTU; Calico "
        "derives pod MTU = host MTU minus the tunnel overhead."),
    DropReason.NO_ROUTE: (
        "Check that the destination address belongs to a running pod or a node; addresses in an "
        "IPAM block without a pod hit the block's blackhole route."),
    DropReason.CONNTRACK_INVALID: (
        "The packet fits no connection conntrack knows (e.g. a reply or mid-stream packet without"
        " the connection's start); trace the connection from its first packet."),
    DropReason.UNKNOWN_INTERFACE: (
        "The interface is not a known workload of this node: the pod is not (yet) programmed by "
        "felix."),
    DropReason.ENCAP_FROM_WORKLOAD: (
        "Workloads may not send IPIP/VXLAN; set FelixConfiguration "
        "allowVXLANPacketsFromWorkloads/allowIPIPPacketsFromWorkloads if this is intended."),
    DropReason.ENDPOINT_TO_HOST: (
        "FelixConfiguration defaultEndpointToHostAction drops pod-to-host traffic; set it to "
        "Accept or allow it with a host endpoint policy."),
    DropReason.UNKNOWN_TUNNEL_PEER: (
        "The tunnel packet's sender is not a Calico node; add it as a Node."),
    DropReason.NO_TUNNEL_DEVICE: (
        "The nodes disagree on the tunnel: give them the same FelixConfiguration vxlanPort / "
        "wireguardListeningPort (check node.<name> objects against default)."),
    DropReason.HOST_ENDPOINT: (
        "Add an Allow rule for this traffic to a policy selecting the host endpoint (or a "
        "preDNAT/applyOnForward policy for forwarded traffic)."),
    DropReason.SERVICE_LOOP: (
        "Nothing serves this address: use a Service's cluster or external IP, or leave it out "
        "of the BGPConfiguration's service CIDRs (FelixConfiguration serviceLoopPrevention "
        "Disabled lets it loop)."),
    DropReason.NO_ENDPOINTS: (
        "Check the Service's selector and that its pods are ready: kubectl get endpointslices -l "
        "kubernetes.io/service-name=<service>."),
}


@dataclass(frozen=True)
class Gap:
    aspect: str                        # protocol | port | labels | namespace | nets | peer
    fix: str


def fix_hint(cluster, trace: PacketTrace, drop: DropRecord,
             verdicts: list[DirectionDecision], flow: Flow) -> str:
    deciding = next((v for v in verdicts if not v.allowed), None)
    if drop.reason is DropReason.DENIED_BY_RULE and deciding is not None and deciding.deciding:
        ref = deciding.deciding
        return (f"Deny rule {ref.rule_index} of {ref.policy_kind} {ref.policy_key} matches this "
                f"packet. If it should pass, add an Allow rule for it before rule "
                f"{ref.rule_index}, or in a policy with a lower order in tier {ref.tier}.")
    if drop.reason is DropReason.DEFAULT_DENY and deciding is not None:
        return _default_deny_hint(cluster, deciding, flow, trace.src, trace.dst)
    return STATIC_HINTS.get(drop.reason, "")


def _default_deny_hint(cluster, v: DirectionDecision, flow: Flow, src, dst) -> str:
    peer = src if v.direction == "ingress" else dst
    policies = applied_policies(cluster, v)
    best: tuple[list[Gap], Policy, int] | None = None
    for policy in policies:
        for index, rule in enumerate(policy.rules(v.direction)):
            if rule.action != "Allow":
                continue
            gaps = rule_gaps(rule, flow, src, dst) or [
                Gap("other", "ICMP type/code, named ports or the IP version")]
            if best is None or len(gaps) < len(best[0]):
                best = (gaps, policy, index)
    port = f"{_proto_name(flow.protocol)} {flow.dst_port}" if flow.dst_port else \
        _proto_name(flow.protocol)
    if best is None:
        if not policies:
            return ("No policy allows it and no profile accepts it: add a policy allowing "
                    f"{port} for {v.endpoint}.")
        target = policies[0]
        who = _peer_selector_suggestion(peer)
        side = "from" if v.direction == "ingress" else "to"
        return (f"{target.kind} {target.key} has no {v.direction} Allow rule: add one "
                f"allowing {port} {side} {who}.")
    gaps, policy, index = best
    if len(gaps) > 1:
        # Changing the closest rule takes several edits: one new rule is the smaller change.
        side = "from" if v.direction == "ingress" else "to"
        return (f"Add an {v.direction} rule to {policy.kind} {policy.key} allowing {port} "
                f"{side} {_peer_selector_suggestion(peer)} (its closest rule, {v.direction} "
                f"rule {index}, differs in {', '.join(g.aspect for g in gaps)}).")
    fixes = "; ".join(gap.fix for gap in gaps)
    return f"Closest rule: {policy.kind} {policy.key} {v.direction} rule {index}. {fixes}."


def applied_policies(cluster, v: DirectionDecision) -> list[Policy]:
    """The enforced policies behind ``applied_policies`` labels, in evaluation order."""
    by_label = {policy_label(p): p for p in cluster.policies}
    found = (by_label.get(label) for label in v.applied_policies)
    return [p for p in found if p is not None and not p.staged]


def rule_gaps(rule: Rule, flow: Flow, src, dst) -> list[Gap]:
    """What the packet lacks to match ``rule``, one gap per aspect, on both sides of it."""
    gaps: list[Gap] = []
    if rule.protocol is not None and protocol_number(rule.protocol) != flow.protocol:
        gaps.append(Gap("protocol", f"the rule allows {rule.protocol} only; add "
                    f"{_proto_name(flow.protocol)} to it"))
    if rule.not_protocol is not None and protocol_number(rule.not_protocol) == flow.protocol:
        gaps.append(Gap("protocol", f"the rule excludes {rule.not_protocol}"))
    gaps += _port_gaps(rule.destination, flow.dst_port, flow, "destination")
    gaps += _port_gaps(rule.source, flow.src_port, flow, "source")
    for entity, place, side in ((rule.source, src, "source"), (rule.destination, dst,
                                                                "destination")):
        if entity.nets and not any(place.ip in net for net in entity.nets):
            gaps.append(Gap("nets", f"{place.ip} is outside the rule's {side} nets "
                            f"({', '.join(map(str, entity.nets))}); add {place.ip}/32"))
        excluded = [net for net in entity.not_nets if place.ip in net]
        if excluded:
            gaps.append(Gap("nets", f"{place.ip} is excluded by the rule's {side} notNets "
                            f"({', '.join(map(str, excluded))})"))
        if entity.selector:
            gaps.extend(_selector_gaps(entity.selector, place))
        if entity.not_selector and place.endpoint is not None and \
                parse_selector(entity.not_selector).matches(place.endpoint.labels):
            gaps.append(Gap("labels", f"{place.label} is excluded by the rule's {side} "
                            f"notSelector {entity.not_selector}"))
    return gaps


def _port_gaps(entity, port: int | None, flow: Flow, side: str) -> list[Gap]:
    if flow.protocol not in PORTED or port is None:
        return [Gap("protocol", "the rule names ports; only TCP, UDP and SCTP have them")] \
            if entity.ports and flow.protocol not in PORTED else []
    gaps = []
    numeric = [p for p in entity.ports if not p.is_named]
    if entity.ports and not any(p.is_named for p in entity.ports) and \
            not any(p.first <= port <= p.last for p in numeric):
        listed = ",".join(str(p) for p in entity.ports)
        gaps.append(Gap("port", f"the rule allows {side} ports {listed}; add port {port}"))
    if any(not p.is_named and p.first <= port <= p.last for p in entity.not_ports):
        gaps.append(Gap("port", f"the rule excludes {side} port {port} (notPorts)"))
    return gaps


def _selector_gaps(text: str, peer) -> list[Gap]:
    if peer.endpoint is None:
        return [Gap("peer", f"{peer.label} is not a pod, and the rule selects pods by label")]
    labels = peer.endpoint.labels
    selector = parse_selector(text)
    if selector.matches(labels):
        return []
    gaps: list[Gap] = []
    for term in _conjuncts(selector.root):
        if not evaluate(term, labels):
            gaps.append(_term_fix(term, peer))
    return gaps


def _conjuncts(node):
    """The terms of a selector that must all hold: nested ``&&`` groups flattened."""
    if isinstance(node, And):
        for operand in node.operands:
            yield from _conjuncts(operand)
    else:
        yield node


def _term_fix(term, peer) -> Gap:
    pod = peer.endpoint.pod
    if isinstance(term, Compare) and term.op == EQ:
        return _label_gap(term.label, term.value, pod)
    if isinstance(term, Has):
        return _label_gap(term.label, None, pod)
    if isinstance(term, InSet) and not term.negated and term.values:
        return _label_gap(term.label, term.values[0], pod)
    return Gap("labels", f"{peer.label} fails the selector term {canonical_text(term)}")


def _label_gap(label: str, value: str | None, pod) -> Gap:
    shown = f"{label.removeprefix('pcns.')}={value}" if value is not None else \
        f"{label.removeprefix('pcns.')}=<any>"
    if label == NAMESPACE_LABEL:
        return Gap("namespace", f"the rule only admits pods of namespace {value}, and "
                   f"{pod.key} is in {pod.namespace}; add a namespaceSelector to the rule")
    if label == "pcns.kubernetes.io/metadata.name":
        return Gap("namespace", f"the rule admits only namespace {value}, and {pod.key} is "
                   f"in {pod.namespace}")
    if label.startswith("pcns."):
        return Gap("namespace", f"label namespace {pod.namespace} with {shown} "
                   f"(kubectl label namespace {pod.namespace} {shown.replace('<any>', 'x')})")
    if label.startswith("pcsa."):
        return Gap("labels", f"label service account {pod.service_account} with "
                   f"{label.removeprefix('pcsa.')}={value}")
    if label == "projectcalico.org/serviceaccount":
        return Gap("labels", f"run {pod.key} as service account {value}")
    return Gap("labels", f"label pod {pod.key} with {shown} (kubectl label pod -n "
               f"{pod.namespace} {pod.name} {shown.replace('<any>', 'x')})")


def _peer_selector_suggestion(peer) -> str:
    if peer.endpoint is None:
        return f"{peer.ip}/32 (ipBlock)"
    labels = peer.endpoint.pod.labels
    for key in ("app", "app.kubernetes.io/name", "role", "k8s-app", "run"):
        if key in labels:
            return f"pods with {key}={labels[key]}"
    return f"pod {peer.endpoint.key}"


def _proto_name(number: int) -> str:
    return {6: "TCP", 17: "UDP", 1: "ICMP", 132: "SCTP"}.get(number, str(number))
