"""Name the reason for a netfilter drop, from the deciding rule.

Rules felix rendered for us carry a :class:`~tracer.dataplane.ir.Provenance`. Rules parsed
from a real node's ``iptables-save`` do not, so the same reasons are recovered from what felix
writes into the kernel: its comments and chain names (felix/rules/*.go).
"""

from __future__ import annotations

from tracer.dataplane.events import NetfilterEvent, felix_chain
from tracer.dataplane.ir import ConntrackMatch, RpfilterMatch
from tracer.dataplane.reasons import DropReason as R

ROLE_REASONS = {
    "policy-rule": R.DENIED_BY_RULE,
    "tier-end-drop": R.DEFAULT_DENY,
    "no-profile-drop": R.DEFAULT_DENY,
    "conntrack-invalid": R.CONNTRACK_INVALID,
    "rpf": R.RPF_CHECK,
    "unknown-interface": R.UNKNOWN_INTERFACE,
    "encap-drop": R.ENCAP_FROM_WORKLOAD,
    "failsafe": R.FAILSAFE,
    "host-endpoint": R.HOST_ENDPOINT,
    "endpoint-to-host": R.ENDPOINT_TO_HOST,
    "tunnel-peer-drop": R.UNKNOWN_TUNNEL_PEER,
    "service-loop-prevention": R.SERVICE_LOOP,
}
# kube-proxy's rules carry no felix provenance; the REJECT for a Service without endpoints is
# recognised by the comment kube-proxy writes on it.

# Felix comment text (any release we render) -> reason.
COMMENT_REASONS = (
    ("Drop if no policies passed packet", R.DEFAULT_DENY),
    ("Drop if no profiles matched", R.DEFAULT_DENY),
    ("Unknown interface", R.UNKNOWN_INTERFACE),
    ("encapped packets originating in workloads", R.ENCAP_FROM_WORKLOAD),
    ("from non-Calico hosts", R.UNKNOWN_TUNNEL_PEER),
    ("from non-allowed hosts", R.UNKNOWN_TUNNEL_PEER),
    ("Configured DefaultEndpointToHostAction", R.ENDPOINT_TO_HOST),
    ("Endpoint admin disabled", R.UNKNOWN_INTERFACE),
    ("has no endpoints", R.NO_ENDPOINTS),
)


# Host endpoint chains (felix/rules/endpoints.go): policy drops there are host-endpoint drops.
HOST_ENDPOINT_CHAINS = ("cali-fh-", "cali-th-", "cali-fhfw-", "cali-thfw-")


# Every reason :func:`classify_drop` can name: what the netfilter stage declares.
NETFILTER_REASONS = frozenset({*ROLE_REASONS.values(), *(r for _, r in COMMENT_REASONS),
                               R.CONNTRACK_INVALID, R.RPF_CHECK, R.DENIED_BY_RULE,
                               R.HOST_ENDPOINT, R.NETFILTER_DROP})


def classify_drop(event: NetfilterEvent | None, table: str) -> tuple[R, str]:
    """(reason code, one-line detail) for the event that dropped the packet."""
    reason, detail = _classify(event, table)
    if event is not None and felix_chain(event.chain).startswith(HOST_ENDPOINT_CHAINS) and reason in (
            R.DEFAULT_DENY, R.DENIED_BY_RULE):
        return R.HOST_ENDPOINT, detail
    return reason, detail


def _classify(event: NetfilterEvent | None, table: str) -> tuple[R, str]:
    if event is None:
        return R.NETFILTER_DROP, f"dropped in the {table} table"
    where = f"{event.table}/{event.chain}"
    if event.kind == "policy":
        return R.NETFILTER_DROP, f"{where}: chain policy {event.effect}"
    where += f" rule {event.rule_number}"
    rule = event.rule
    if rule is not None and rule.provenance is not None:
        reason = ROLE_REASONS.get(rule.provenance.role)
        if reason is not None:
            return reason, where
    if rule is not None:
        text = " ".join(rule.comments)
        for needle, reason in COMMENT_REASONS:
            if needle in text:
                return reason, where
        if any(isinstance(m, ConntrackMatch) and "INVALID" in m.states and not m.negated
               for m in rule.matches):
            return R.CONNTRACK_INVALID, where
        if any(isinstance(m, RpfilterMatch) for m in rule.matches):
            return R.RPF_CHECK, where
        if felix_chain(event.chain).startswith(("cali-pi-", "cali-po-")):
            return R.DENIED_BY_RULE, where
    return R.NETFILTER_DROP, where
