"""What live mode realises: one namespace per pod, declared from the cluster before anything
is created (realised by :mod:`tracer.live.netns`)."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address

from tracer.model.cluster import Cluster
from tracer.trace.assemble import mtus

POD_GATEWAY = IPv4Address("169.254.1.1")     # Calico's CNI: every pod routes via this address


@dataclass(frozen=True)
class LivePod:
    key: str                                 # "ns/name"
    ip: IPv4Address
    node: str
    interface: str                           # the host-side cali… name the pipeline knows
    mtu: int


def live_pods(cluster: Cluster) -> tuple[LivePod, ...]:
    """Every workload endpoint of the cluster (host-network pods have none), in key order."""
    return tuple(LivePod(ep.key, ep.pod.ip, ep.pod.node, ep.interface,
                         mtus(cluster, ep.pod.node).pod)
                 for ep in sorted(cluster.endpoints.values(), key=lambda e: e.key))
