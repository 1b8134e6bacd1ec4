"""What every node's renderer asks about the whole cluster, indexed once per loaded cluster.

felix answers "which policies select this endpoint?" and "which endpoints belong in this
selector's IP set?" from its label indexes (felix/labelindex), not by testing every selector
against every endpoint; :class:`ClusterFacts` holds the same two indexes. Build it once for a
cluster (``ClusterFacts(cluster)``) and share it between the nodes rendered from that cluster;
a changed cluster needs new facts.
"""

from __future__ import annotations

from dataclasses import dataclass

from tracer.model.cluster import Cluster, ContainerPort, Policy
from tracer.selector.labelindex import LabelIndex, SelectorIndex


@dataclass(frozen=True)
class Labelled:
    """Something a selector IP set can hold: a workload, host endpoint or network set."""

    labels: dict[str, str]
    addresses: tuple[str, ...]
    ports: tuple[ContainerPort, ...] = ()


def labelled_addresses(cluster: Cluster) -> list[Labelled]:
    """Every endpoint and network set in the cluster with the labels felix indexes it by
    (named_port_index.go: a host endpoint inherits its profiles' labels, a namespaced network
    set its namespace's; own labels win)."""
    out = [Labelled(ep.labels, (str(ep.pod.ip),), tuple(ep.pod.ports))
           for ep in cluster.endpoints.values() if not ep.pod.host_network]
    for hep in cluster.host_endpoints:
        labels = dict(hep.labels)
        for name in hep.profiles:
            if name in cluster.profiles:
                labels = {**cluster.profiles[name].labels_to_apply, **labels}
        out.append(Labelled(labels, tuple(str(ip) for ip in hep.expected_ips)))
    for netset in cluster.network_sets:
        labels = dict(netset.labels)
        if netset.namespace:
            profile = cluster.profiles.get(f"kns.{netset.namespace}")
            parent = profile.labels_to_apply if profile else {}
            labels = {**parent, **labels, "projectcalico.org/namespace": netset.namespace}
        out.append(Labelled(labels, tuple(str(n) for n in netset.nets)))
    return out


class ClusterFacts:
    """The cluster's label indexes: endpoints by labels, policies by selector."""

    def __init__(self, cluster: Cluster):
        self.cluster = cluster
        entries = labelled_addresses(cluster)
        self.labelled = LabelIndex((number, entry.labels)
                                   for number, entry in enumerate(entries))
        self._entries = entries
        self.policies: SelectorIndex[Policy] = SelectorIndex(
            [(pol, pol.selector) for pol in cluster.policies])

    def selected(self, selector) -> list[Labelled]:
        """The endpoints and network sets a selector matches, in cluster order."""
        return [self._entries[number] for number in self.labelled.matching(selector)]

    def policies_selecting(self, labels: dict[str, str]) -> list[Policy]:
        """The cluster's policies whose selector matches these labels, in cluster order."""
        return self.policies.matching(labels)
