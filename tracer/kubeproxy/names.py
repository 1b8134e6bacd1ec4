"""kube-proxy's chain names and probabilities, computed the way ``pkg/proxy/iptables/proxier.go``
does (``portProtoHash``, ``servicePortEndpointChainName``, ``computeProbability``).

A service port is named by ``ServicePortName.String()``: ``"<ns>/<svc>"`` plus ``":<port name>"``
when the port has a name. Chain suffixes are the first 16 characters of the base32 (with
padding alphabet, upper case) SHA-256 of that string followed by the lower-case protocol, and for
an endpoint chain also the endpoint's ``"<ip>:<port>"``.
"""

from __future__ import annotations

import base64
import hashlib

SVC_PREFIX = "KUBE-SVC-"          # Cluster traffic policy: dispatch to every endpoint
SVL_PREFIX = "KUBE-SVL-"          # Local traffic policy: this node's endpoints only
FW_PREFIX = "KUBE-FW-"            # loadBalancerSourceRanges firewall
EXT_PREFIX = "KUBE-EXT-"          # NodePort / external IP / load-balancer entry
SEP_PREFIX = "KUBE-SEP-"          # one endpoint: hairpin masquerade + DNAT


def service_port_name(namespace: str, name: str, port_name: str | None) -> str:
    """``ServicePortName.String()``: ``ns/name`` or ``ns/name:port``."""
    base = f"{namespace}/{name}"
    return f"{base}:{port_name}" if port_name else base


def _hash16(text: str) -> str:
    digest = hashlib.sha256(text.encode()).digest()
    return base64.b32encode(digest).decode()[:16]


def port_proto_hash(port_name: str, protocol: str) -> str:
    return _hash16(port_name + protocol.lower())


def svc_chain(port_name: str, protocol: str) -> str:
    return SVC_PREFIX + port_proto_hash(port_name, protocol)


def svl_chain(port_name: str, protocol: str) -> str:
    return SVL_PREFIX + port_proto_hash(port_name, protocol)


def fw_chain(port_name: str, protocol: str) -> str:
    return FW_PREFIX + port_proto_hash(port_name, protocol)


def ext_chain(port_name: str, protocol: str) -> str:
    return EXT_PREFIX + port_proto_hash(port_name, protocol)


def sep_chain(port_name: str, protocol: str, endpoint: str) -> str:
    """``endpoint`` is ``BaseEndpointInfo.String()``: ``net.JoinHostPort(ip, port)``."""
    return SEP_PREFIX + _hash16(port_name + protocol.lower() + endpoint)


def probability(n: int) -> str:
    """``computeProbability``: ``fmt.Sprintf("%0.10f", 1.0/float64(n))``. Python's ``%`` and
    Go's ``fmt`` both round the exact binary value, so the digits agree."""
    return "%0.10f" % (1.0 / n)


def quantised(text: str) -> float:
    """What ``xt_statistic`` keeps of ``--probability``: libxt_statistic stores
    ``lround(0x80000000 * p)`` and ``iptables-save`` prints it back divided by 2^31."""
    return int(float(text) * 0x80000000 + 0.5) / 0x80000000
