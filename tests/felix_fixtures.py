"""Small clusters built straight from the model dataclasses, for the felix renderer tests."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from tracer.model.cluster import (Cluster, IPPool, Node, Pod, Policy, Profile, Rule, Tier,
                                  WorkloadEndpoint)
from tracer.model.names import workload_interface_name


def pod_ep(ns: str, name: str, node: str, ip: str, labels: dict | None = None,
           sa: str = "default", ports: tuple = ()) -> WorkloadEndpoint:
    labels = dict(labels or {})
    pod = Pod(ns, name, node, IPv4Address(ip), labels, sa, tuple(ports))
    full = {**labels, "projectcalico.org/namespace": ns,
            "projectcalico.org/orchestrator": "k8s", "projectcalico.org/serviceaccount": sa,
            "pcns.projectcalico.org/name": ns, "pcsa.projectcalico.org/name": sa}
    return WorkloadEndpoint(pod, workload_interface_name(ns, name), full,
                            (f"kns.{ns}", f"ksa.{ns}.{sa}"))


def cluster(policies=(), extra_eps=(), felix=None, pool: IPPool | None = None) -> Cluster:
    """calico-dataplane.md §10: default/client and default/web on node1, an IPIP pool."""
    c = Cluster()
    c.nodes["node1"] = Node("node1", IPv4Interface("10.0.0.1/24"),
                            ipip_tunnel_address=IPv4Address("192.168.1.1"))
    c.nodes["node2"] = Node("node2", IPv4Interface("10.0.0.2/24"),
                            ipip_tunnel_address=IPv4Address("192.168.2.1"))
    c.ippools["default-ipv4-ippool"] = pool or IPPool(
        "default-ipv4-ippool", IPv4Network("192.168.0.0/16"), ipip_mode="Always",
        nat_outgoing=True)
    c.tiers["default"] = Tier("default", 1_000_000.0)
    eps = [pod_ep("default", "client", "node1", "192.168.1.10", {"app": "client"}),
           pod_ep("default", "web", "node1", "192.168.1.20", {"app": "web"}), *extra_eps]
    for ep in eps:
        c.endpoints[ep.key] = ep
        c.pods[ep.key] = ep.pod
    c.profiles["kns.default"] = Profile("kns.default", {"pcns.projectcalico.org/name": "default"},
                                        (Rule("Allow"),), (Rule("Allow"),))
    c.profiles["ksa.default.default"] = Profile("ksa.default.default",
                                                {"pcsa.projectcalico.org/name": "default"})
    c.policies.extend(policies)
    if felix is not None:
        c.felix = felix
    return c


DENY_INGRESS = Policy(
    kind="KubernetesNetworkPolicy", name="default-deny-ingress", namespace="default",
    tier="default", order=1000.0,
    selector="(projectcalico.org/orchestrator == 'k8s' && app == 'web') && "
             "projectcalico.org/namespace == 'default'",
    types=("ingress",))
