"""Everything felix's rule renderer is configured with for one node (rules.Config)."""

from __future__ import annotations

from dataclasses import dataclass, field

from tracer.dataplane.ir import Provenance
from tracer.errors import InputError
from tracer.model.cluster import Cluster, FelixConfig, Node
from tracer.policy.felix import builder as b
from tracer.policy.felix.facts import ClusterFacts
from tracer.policy.felix.versions import Knobs, MarkBits, knobs, mark_bits, resolve_version
from tracer.selector.selector import ipset_name

# environment/feature_detect.go: MASQUERADE --random-fully needs iptables >= 1.6.2 and
# kernel >= 3.14, true on every host a supported Calico runs on.
MASQ_FULLY_RANDOM = True


@dataclass(frozen=True)
class Ctx:
    """Renderer configuration for one node and one Calico release."""

    cluster: Cluster
    node: Node
    knob: Knobs
    marks: MarkBits
    felix: FelixConfig
    ipip_enabled: bool
    vxlan_enabled: bool
    facts: ClusterFacts = field(repr=False, compare=False)

    @property
    def prefixes(self) -> tuple[str, ...]:
        return self.felix.interface_prefixes

    @property
    def deny(self) -> b.Action:
        """IptablesFilterDenyAction (Drop or Reject)."""
        return b.REJECT if self.felix.iptables_filter_deny_action == "Reject" else b.DROP

    @property
    def deny_word(self) -> str:
        """The action's String() used inside comments: "Drop" / "Reject"."""
        return "Reject" if self.felix.iptables_filter_deny_action == "Reject" else "Drop"

    @property
    def filter_allow(self) -> b.Action:
        return b.RETURN if self.felix.iptables_filter_allow_action == "Return" else b.ACCEPT

    @property
    def mangle_allow(self) -> b.Action:
        return b.RETURN if self.felix.iptables_mangle_allow_action == "Return" else b.ACCEPT

    @property
    def wireguard(self) -> bool:
        return self.felix.wireguard_enabled

    def set_name(self, set_id: str) -> str:
        return ipset_name(set_id, 4)

    @property
    def all_pools_set(self) -> str:
        return self.set_name(self.knob.all_pools_set)


def static_prov(role: str = "static", source: str = "rules/static.go", **kw) -> Provenance:
    return Provenance(role=role, source=source, **kw)


def make_ctx(cluster: Cluster, node_name: str, version: str | None,
             facts: ClusterFacts | None = None) -> Ctx:
    """``facts``: the cluster's indexes, shared by the nodes rendered from one cluster
    (built here when not given)."""
    node = cluster.nodes.get(node_name)
    if node is None:
        known = ", ".join(sorted(cluster.nodes)) or "none"
        raise InputError(f"unknown node {node_name!r} (nodes: {known})")
    short = resolve_version(cluster, version)
    pools = [p for p in cluster.ippools.values()]
    # calico-node sets IPIP/VXLAN enabled when any pool uses the encapsulation.
    ipip = any(p.ipip_mode in ("Always", "CrossSubnet") for p in pools)
    vxlan = any(p.vxlan_mode in ("Always", "CrossSubnet") for p in pools)
    felix = cluster.felix_for(node_name)
    return Ctx(cluster=cluster, node=node, knob=knobs(short),
               marks=mark_bits(short, felix), felix=felix,
               ipip_enabled=ipip, vxlan_enabled=vxlan,
               facts=facts if facts is not None else ClusterFacts(cluster))
