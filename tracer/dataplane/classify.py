"""Name the reason for a netfilter drop, from the deciding rule.

Rules felix rendered for us carry a :class:`~tracer.dataplane.ir.Provenance`. Rules parsed
from a real node's ``iptables-save`` do not, so the same reasons are recovered from what felix
writes into the kernel: its comments and chain names (felix/rules/*.go).
"""

from __future__ import annotations

from tracer.dataplane.events import NetfilterEvent
from tracer.dataplane.ir import ConntrackMatch, RpfilterMatch

ROLE_REASONS = {
    "policy-rule": "denied-by-rule",
    "tier-end-drop": "default-deny",
    "no-profile-drop": "default-deny",
    "conntrack-invalid": "conntrack-invalid",
    "rpf": "rpf-check",
    "unknown-interface": "unknown-interface",
    "encap-drop": "encap-from-workload",
    "failsafe": "failsafe",
    "host-endpoint": "host-endpoint",
    "endpoint-to-host": "endpoint-to-host",
    "tunnel-peer-drop": "unknown-tunnel-peer",
    "cidr-block": "no-route",
}
# kube-proxy's rules carry no felix provenance; the REJECT for a Service without endpoints is
# recognised by the comment kube-proxy writes on it.

# Felix comment text (any release we render) -> reason.
COMMENT_REASONS = (
    ("Drop if no policies passed packet", "default-deny"),
    ("Drop if no profiles matched", "default-deny"),
    ("Unknown interface", "unknown-interface"),
    ("encapped packets originating in workloads", "encap-from-workload"),
    ("from non-Calico hosts", "unknown-tunnel-peer"),
    ("from non-allowed hosts", "unknown-tunnel-peer"),
    ("Configured DefaultEndpointToHostAction", "endpoint-to-host"),
    ("Endpoint admin disabled", "unknown-interface"),
    ("has no endpoints", "no-endpoints"),
)


# Host endpoint chains (felix/rules/endpoints.go): policy drops there are host-endpoint drops.
HOST_ENDPOINT_CHAINS = ("cali-fh-", "cali-th-", "cali-fhfw-", "cali-thfw-")


def classify_drop(event: NetfilterEvent | None, table: str) -> tuple[str, str]:
    """(reason code, one-line detail) for the event that dropped the packet."""
    reason, detail = _classify(event, table)
    if event is not None and event.chain.startswith(HOST_ENDPOINT_CHAINS) and reason in (
            "default-deny", "denied-by-rule"):
        return "host-endpoint", detail
    return reason, detail


def _classify(event: NetfilterEvent | None, table: str) -> tuple[str, str]:
    if event is None:
        return "netfilter-drop", f"dropped in the {table} table"
    where = f"{event.table}/{event.chain}"
    if event.kind == "policy":
        return "netfilter-drop", f"{where}: chain policy {event.effect}"
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
            return "conntrack-invalid", where
        if any(isinstance(m, RpfilterMatch) for m in rule.matches):
            return "rpf-check", where
        if event.chain.startswith(("cali-pi-", "cali-po-")):
            return "denied-by-rule", where
    return "netfilter-drop", where
