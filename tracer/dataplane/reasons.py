"""Why a packet died: the one vocabulary of drop reasons, each with its plain-language text.

Every stage of the pipeline declares which of these it can emit (``Stage.reasons``), and a test
checks that whatever a trace emits is declared by the stage that emitted it and explained here
(VPP keeps its error counters the same way, one ``.def`` list per node).
"""

from __future__ import annotations

from enum import StrEnum


class DropReason(StrEnum):
    """A drop reason: the value is the stable code shown in JSON and counters."""

    text: str

    def __new__(cls, code: str, text: str) -> "DropReason":
        member = str.__new__(cls, code)
        member._value_ = code
        member.text = text
        return member

    DENIED_BY_RULE = ("denied-by-rule", "a policy rule with action Deny matched")
    DEFAULT_DENY = ("default-deny", "the endpoint is selected by policy but no policy allowed "
                    "the packet (end of tier), or no profile accepted it")
    NO_ROUTE = ("no-route", "the node has no route to the destination")
    RPF_CHECK = ("rpf-check", "reverse-path check failed: the source address does not route "
                 "back through the arrival interface (spoofed source)")
    CONNTRACK_INVALID = ("conntrack-invalid", "conntrack classified the packet INVALID")
    MTU_EXCEEDED = ("mtu-exceeded", "the packet is larger than the path MTU and has DF set")
    FAILSAFE = ("failsafe", "dropped by host-endpoint failsafe handling")
    HOST_ENDPOINT = ("host-endpoint", "dropped by host endpoint policy")
    UNKNOWN_INTERFACE = ("unknown-interface", "the packet came from or goes to a cali "
                         "interface felix does not know")
    ENCAP_FROM_WORKLOAD = ("encap-from-workload", "workloads may not send IPIP/VXLAN packets")
    UNKNOWN_TUNNEL_PEER = ("unknown-tunnel-peer", "tunnel packet from a host that is not a "
                           "Calico node")
    NO_TUNNEL_DEVICE = ("no-tunnel-device", "a tunnel packet reached a node where no tunnel "
                        "device takes it (another VXLAN or WireGuard port, or no such tunnel)")
    TTL_EXCEEDED = ("ttl-exceeded", "the TTL reached zero")
    CONNTRACK_FULL = ("conntrack-full", "the conntrack table is full")
    ENDPOINT_TO_HOST = ("endpoint-to-host", "DefaultEndpointToHostAction drops pod-to-host "
                        "traffic")
    NO_ENDPOINTS = ("no-endpoints", "the Service has no ready endpoints: kube-proxy rejects "
                    "the connection")
    SERVICE_LOOP = ("service-loop", "addressed to an advertised service CIDR but taken by no "
                    "Service: felix's ServiceLoopPrevention stops it looping to the router")
    NETFILTER_DROP = ("netfilter-drop", "dropped by an iptables rule that is not Calico policy")
    MALFORMED = ("malformed", "the packet's headers are malformed or truncated")


def reason_text(code: str) -> str:
    """The text of a reason code; an unknown code is a bug, not a silent pass-through."""
    return DropReason(code).text
