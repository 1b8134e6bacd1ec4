"""Names of the ends of a packet, resolved against the cluster: a pod, a node, or a host
outside the cluster."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, ip_address
from typing import Literal

from tracer.errors import InputError, quote
from tracer.model.cluster import Cluster, WorkloadEndpoint

PlaceKind = Literal["pod", "host", "external", "service"]


@dataclass(frozen=True)
class Place:
    """One end of a trace."""

    kind: PlaceKind
    ip: IPv4Address
    label: str                 # "ns/pod", "host <node>", "external <ip>", "svc/ns/name:port"
    node: str | None = None
    endpoint: WorkloadEndpoint | None = None


def resolve(cluster: Cluster, text: str, role: str) -> Place:
    """``NAMESPACE/POD`` or an IPv4 address; ``role`` names the option in errors."""
    if "/" in text and not _looks_like_ip(text):
        ep = cluster.endpoints.get(text)
        if ep is None:
            pod = cluster.pods.get(text)
            if pod is not None and pod.host_network:
                return Place("host", pod.ip, f"host {pod.node}", node=pod.node)
            raise InputError(f"no pod {quote(text)} in the cluster", obj=f"--{role}")
        return Place("pod", ep.pod.ip, ep.key, node=ep.pod.node, endpoint=ep)
    try:
        addr = ip_address(text)
    except ValueError:
        raise InputError(f"{quote(text)} is neither NAMESPACE/POD nor an IPv4 address",
                         obj=f"--{role}") from None
    if not isinstance(addr, IPv4Address):
        raise InputError("only IPv4 is modelled", obj=f"--{role}")
    return place_of(cluster, addr)


def place_of(cluster: Cluster, addr: IPv4Address) -> Place:
    """Whoever owns ``addr``: a pod, a node, else a host outside the cluster."""
    ep = cluster.endpoint_by_ip(addr)
    if ep is not None:
        return Place("pod", addr, ep.key, node=ep.pod.node, endpoint=ep)
    node = cluster.node_by_ip(addr)
    if node is not None:
        return Place("host", addr, f"host {node.name}", node=node.name)
    return Place("external", addr, f"external {addr}")


def _looks_like_ip(text: str) -> bool:
    try:
        ip_address(text.split("/")[0])
        return True
    except ValueError:
        return False
