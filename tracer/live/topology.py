"""What live mode realises: one namespace per pod, per node's own stack and for the external
host, declared from the cluster before anything is created (realised by
:mod:`tracer.live.netns`)."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address

from tracer.model.cluster import Cluster
from tracer.trace.assemble import mtus
from tracer.trace.routes import underlay_gateway

POD_GATEWAY = IPv4Address("169.254.1.1")     # Calico's CNI: every pod routes via this address
NODE_PREFIX = "node:"                        # a node's own stack: "node:<name>"
EXTERNAL = "external"                        # the host outside the cluster, on the underlay


@dataclass(frozen=True)
class LiveEnd:
    """Something that sends and receives in live mode: a pod, a node's own stack (where
    host-network programs run) or the external host on the underlay."""

    key: str                                 # "ns/name", "node:<name>" or "external"
    ip: IPv4Address
    node: str | None                         # the node it lives on; None: outside the cluster
    interface: str | None                    # a pod's host-side cali… name; None: not a pod
    mtu: int

    @property
    def is_pod(self) -> bool:
        return self.interface is not None


def live_pods(cluster: Cluster) -> tuple[LiveEnd, ...]:
    """Every workload endpoint of the cluster (host-network pods have none), in key order."""
    return tuple(LiveEnd(ep.key, ep.pod.ip, ep.pod.node, ep.interface,
                         mtus(cluster, ep.pod.node).pod)
                 for ep in sorted(cluster.endpoints.values(), key=lambda e: e.key))


def live_hosts(cluster: Cluster) -> tuple[LiveEnd, ...]:
    """Each node's own stack at its underlay address, and the external host at the underlay
    gateway (the address `verify` uses for it), when the cluster has one."""
    hosts = [LiveEnd(f"{NODE_PREFIX}{name}", node.address.ip, name, None,
                     cluster.felix_for(name).host_mtu)
             for name, node in sorted(cluster.nodes.items())]
    gateway = underlay_gateway(cluster)
    if gateway is not None:
        hosts.append(LiveEnd(EXTERNAL, gateway, None, None, cluster.felix.host_mtu))
    return tuple(hosts)


def live_ends(cluster: Cluster) -> tuple[LiveEnd, ...]:
    return live_pods(cluster) + live_hosts(cluster)


def host_network_pods(cluster: Cluster) -> dict[str, str]:
    """Host-network pods ("ns/name") and the node end they run in: `exec` enters that."""
    return {key: f"{NODE_PREFIX}{pod.node}" for key, pod in sorted(cluster.pods.items())
            if pod.host_network and pod.node in cluster.nodes}
