"""Typed records for the objects calico-trace reads, in Calico's backend form.

Kubernetes objects are converted on load (``tracer.model.loader``) the way libcalico-go's
conversion does it: a k8s NetworkPolicy becomes a :class:`Policy` of kind
``KubernetesNetworkPolicy``, namespaces and service accounts become :class:`Profile` objects,
and every pod becomes a :class:`WorkloadEndpoint` carrying the labels felix evaluates
selectors against.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Literal, NamedTuple

from tracer.protocols import VXLAN_DEFAULT_PORT, WIREGUARD_DEFAULT_PORT

Action = Literal["Allow", "Deny", "Pass", "Log"]
PolicyDirection = Literal["ingress", "egress"]
EncapMode = Literal["Always", "CrossSubnet", "Never"]


@dataclass(frozen=True)
class Origin:
    """Where an object was read from, for error messages and provenance."""

    file: str
    kind: str
    name: str            # "ns/name" for namespaced objects

    def describe(self) -> str:
        return f"{self.kind} {self.name}"


NO_ORIGIN = Origin(file="<built-in>", kind="", name="")


# --------------------------------------------------------------------------------- rules


@dataclass(frozen=True)
class PortSpec:
    """One entry of a rule's ports: a numeric range or a named port."""

    first: int | None = None
    last: int | None = None
    name: str | None = None

    @property
    def is_named(self) -> bool:
        return self.name is not None

    def __str__(self) -> str:
        if self.name is not None:
            return self.name
        return str(self.first) if self.first == self.last else f"{self.first}:{self.last}"


@dataclass(frozen=True)
class EntityRule:
    """Calico's ``source`` / ``destination`` of a rule (selectors are kept as source text;
    ``tracer.selector.selector`` parses them once and caches)."""

    nets: tuple[IPv4Network, ...] = ()
    not_nets: tuple[IPv4Network, ...] = ()
    selector: str | None = None
    not_selector: str | None = None
    namespace_selector: str | None = None
    service_account_names: tuple[str, ...] = ()
    service_account_selector: str | None = None
    ports: tuple[PortSpec, ...] = ()
    not_ports: tuple[PortSpec, ...] = ()


@dataclass(frozen=True)
class IcmpFields:
    type: int | None = None
    code: int | None = None


@dataclass(frozen=True)
class Rule:
    action: Action
    protocol: str | None = None            # "TCP", "UDP", "SCTP", "ICMP", "UDPLite" or a number
    not_protocol: str | None = None
    icmp: IcmpFields | None = None
    not_icmp: IcmpFields | None = None
    source: EntityRule = field(default_factory=EntityRule)
    destination: EntityRule = field(default_factory=EntityRule)
    ip_version: int | None = None
    annotations: tuple[tuple[str, str], ...] = ()


# --------------------------------------------------------------------------------- policy


@dataclass(frozen=True)
class Tier:
    name: str
    order: float | None                    # None sorts last (infinity)
    default_action: Literal["Deny", "Pass"] = "Deny"
    origin: Origin = NO_ORIGIN


# The tiers Calico creates itself (api/pkg/apis/projectcalico/v3/tier.go): used when the
# manifests refer to them without declaring them.
BUILTIN_TIERS = {
    "kube-admin": Tier(name="kube-admin", order=1_000.0, default_action="Pass"),
    "default": Tier(name="default", order=1_000_000.0, default_action="Deny"),
    "kube-baseline": Tier(name="kube-baseline", order=10_000_000.0, default_action="Pass"),
}


@dataclass(frozen=True)
class Policy:
    """A policy in Calico's backend form.

    ``kind`` is the API kind: NetworkPolicy, GlobalNetworkPolicy, KubernetesNetworkPolicy,
    StagedNetworkPolicy, StagedGlobalNetworkPolicy or StagedKubernetesNetworkPolicy.
    ``selector`` is the full endpoint selector felix evaluates, namespace term included.
    """

    kind: str
    name: str
    namespace: str | None
    tier: str
    order: float | None
    selector: str
    types: tuple[PolicyDirection, ...]
    ingress: tuple[Rule, ...] = ()
    egress: tuple[Rule, ...] = ()
    do_not_track: bool = False
    pre_dnat: bool = False
    apply_on_forward: bool = False
    origin: Origin = NO_ORIGIN

    @property
    def staged(self) -> bool:
        return self.kind.startswith("Staged")

    @property
    def key(self) -> str:
        """``ns/name`` for namespaced policies, ``name`` for global ones."""
        return f"{self.namespace}/{self.name}" if self.namespace else self.name

    def rules(self, direction: PolicyDirection) -> tuple[Rule, ...]:
        return self.ingress if direction == "ingress" else self.egress


@dataclass(frozen=True)
class Profile:
    name: str                              # kns.<ns>, ksa.<ns>.<sa>, or a Calico Profile's name
    labels_to_apply: dict[str, str] = field(default_factory=dict, hash=False)
    ingress: tuple[Rule, ...] = ()
    egress: tuple[Rule, ...] = ()
    origin: Origin = NO_ORIGIN

    def rules(self, direction: PolicyDirection) -> tuple[Rule, ...]:
        return self.ingress if direction == "ingress" else self.egress


# --------------------------------------------------------------------------------- inventory


@dataclass(frozen=True)
class Namespace:
    name: str
    labels: dict[str, str] = field(default_factory=dict, hash=False)
    origin: Origin = NO_ORIGIN


@dataclass(frozen=True)
class ServiceAccount:
    namespace: str
    name: str
    labels: dict[str, str] = field(default_factory=dict, hash=False)
    origin: Origin = NO_ORIGIN


@dataclass(frozen=True)
class ContainerPort:
    port: int
    protocol: str = "TCP"
    name: str | None = None


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    node: str
    ip: IPv4Address
    labels: dict[str, str] = field(default_factory=dict, hash=False)
    service_account: str = "default"
    ports: tuple[ContainerPort, ...] = ()
    host_network: bool = False
    origin: Origin = NO_ORIGIN

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Node:
    name: str
    address: IPv4Interface                 # underlay address with its subnet, e.g. 10.0.0.1/24
    labels: dict[str, str] = field(default_factory=dict, hash=False)
    ipip_tunnel_address: IPv4Address | None = None
    vxlan_tunnel_address: IPv4Address | None = None
    vxlan_tunnel_mac: str | None = None
    wireguard_public_key: str | None = None
    wireguard_interface_address: IPv4Address | None = None
    origin: Origin = NO_ORIGIN


@dataclass(frozen=True)
class IPPool:
    name: str
    cidr: IPv4Network
    block_size: int = 26
    ipip_mode: EncapMode = "Never"
    vxlan_mode: EncapMode = "Never"
    nat_outgoing: bool = False
    disabled: bool = False
    node_selector: str = "all()"
    origin: Origin = NO_ORIGIN


@dataclass(frozen=True)
class NetworkSet:
    name: str
    namespace: str | None                  # None: GlobalNetworkSet
    nets: tuple[IPv4Network, ...]
    labels: dict[str, str] = field(default_factory=dict, hash=False)
    origin: Origin = NO_ORIGIN


@dataclass(frozen=True)
class HostEndpoint:
    name: str
    node: str
    interface_name: str | None
    expected_ips: tuple[IPv4Address, ...]
    labels: dict[str, str] = field(default_factory=dict, hash=False)
    profiles: tuple[str, ...] = ()
    origin: Origin = NO_ORIGIN


@dataclass(frozen=True)
class ServicePort:
    port: int
    target_port: int | str
    protocol: str = "TCP"
    name: str | None = None
    node_port: int | None = None


@dataclass(frozen=True)
class Service:
    namespace: str
    name: str
    cluster_ip: IPv4Address | None
    type: str = "ClusterIP"
    selector: dict[str, str] = field(default_factory=dict, hash=False)
    ports: tuple[ServicePort, ...] = ()
    origin: Origin = NO_ORIGIN


@dataclass(frozen=True)
class EndpointSlice:
    namespace: str
    name: str
    service: str
    addresses: tuple[IPv4Address, ...]     # ready endpoints only
    ports: tuple[tuple[str | None, int, str], ...] = ()   # (name, port, protocol)
    origin: Origin = NO_ORIGIN


class ProtoPort(NamedTuple):
    """A failsafe entry as felix holds it (config.ProtoPort): ``net`` is the canonical CIDR
    (IPv4 or IPv6) or None for every address."""

    protocol: str                # "tcp" | "udp"
    port: int
    net: str | None = None

    @property
    def ip_version(self) -> int | None:
        return None if self.net is None else (6 if ":" in self.net else 4)


@dataclass(frozen=True)
class FelixConfig:
    """The FelixConfiguration fields that change rendering or verdicts (defaults: felix's)."""

    calico_version: str | None = None
    default_endpoint_to_host_action: Literal["Drop", "Accept", "Return"] = "Drop"
    iptables_filter_allow_action: Literal["Accept", "Return"] = "Accept"
    iptables_mangle_allow_action: Literal["Accept", "Return"] = "Accept"
    iptables_filter_deny_action: Literal["Drop", "Reject"] = "Drop"
    chain_insert_mode: Literal["Insert", "Append"] = "Insert"
    iptables_mark_mask: int = 0xFFFF0000
    log_prefix: str = "calico-packet"
    log_action_rate_limit: str | None = None     # "N/second|minute|hour|day" (v3.30.6+)
    log_action_rate_limit_burst: int = 5         # felix's default; 0 renders no --limit-burst
    interface_prefix: str = "cali"
    failsafe_inbound_host_ports: tuple[ProtoPort, ...] = tuple(ProtoPort(*p) for p in (
        ("tcp", 22), ("udp", 68), ("tcp", 179), ("tcp", 2379), ("tcp", 2380), ("tcp", 5473),
        ("tcp", 6443), ("tcp", 6666), ("tcp", 6667)))
    failsafe_outbound_host_ports: tuple[ProtoPort, ...] = tuple(ProtoPort(*p) for p in (
        ("udp", 53), ("udp", 67), ("tcp", 179), ("tcp", 2379), ("tcp", 2380), ("tcp", 5473),
        ("tcp", 6443), ("tcp", 6666), ("tcp", 6667)))
    disable_conntrack_invalid_check: bool = False
    allow_vxlan_packets_from_workloads: bool = False
    allow_ipip_packets_from_workloads: bool = False
    vxlan_port: int = VXLAN_DEFAULT_PORT
    vxlan_vni: int = 4096
    vxlan_mtu: int = 0
    ipip_mtu: int = 0
    wireguard_enabled: bool = False
    wireguard_listening_port: int = WIREGUARD_DEFAULT_PORT
    wireguard_mtu: int = 0
    wireguard_interface_name: str = "wireguard.cali"
    nat_port_range: tuple[int, int] | None = None
    nat_outgoing_address: str | None = None
    iptables_nat_outgoing_interface_filter: str = ""
    nat_outgoing_exclusions: Literal["IPPoolsOnly", "IPPoolsAndHostIPs"] = "IPPoolsOnly"
    service_loop_prevention: Literal["Drop", "Reject", "Disabled"] = "Drop"
    host_mtu: int = 1500
    # Enabled: felix programs nftables (tracer.nft); Auto follows kube-proxy, which calico-trace
    # models in iptables mode, so Auto and Disabled both mean iptables here.
    nftables_mode: Literal["Enabled", "Disabled", "Auto"] = "Auto"
    origin: Origin = NO_ORIGIN

    @property
    def interface_prefixes(self) -> tuple[str, ...]:
        """FELIX_INTERFACEPREFIX may be a comma-separated list; the first names new veths."""
        return tuple(p.strip() for p in self.interface_prefix.split(",") if p.strip()) or ("cali",)


@dataclass(frozen=True)
class WorkloadEndpoint:
    """A pod as felix sees it: the labels selectors are evaluated on, its profiles, its veth."""

    pod: Pod
    interface: str                         # host-side veth, "cali" + 11 hex chars
    labels: dict[str, str] = field(hash=False)   # pod + projectcalico.org/* + inherited pcns/pcsa
    profiles: tuple[str, ...] = ()         # ("kns.<ns>", "ksa.<ns>.<sa>")

    @property
    def key(self) -> str:
        return self.pod.key


@dataclass
class Cluster:
    """Everything read from the manifests, after conversion to Calico's backend form."""

    namespaces: dict[str, Namespace] = field(default_factory=dict)
    service_accounts: dict[str, ServiceAccount] = field(default_factory=dict)   # "ns/name"
    pods: dict[str, Pod] = field(default_factory=dict)                          # "ns/name"
    nodes: dict[str, Node] = field(default_factory=dict)
    ippools: dict[str, IPPool] = field(default_factory=dict)
    tiers: dict[str, Tier] = field(default_factory=dict)
    policies: list[Policy] = field(default_factory=list)
    profiles: dict[str, Profile] = field(default_factory=dict)
    network_sets: list[NetworkSet] = field(default_factory=list)
    host_endpoints: list[HostEndpoint] = field(default_factory=list)
    services: dict[str, Service] = field(default_factory=dict)                  # "ns/name"
    endpoint_slices: list[EndpointSlice] = field(default_factory=list)
    endpoints: dict[str, WorkloadEndpoint] = field(default_factory=dict)        # "ns/pod"
    felix: FelixConfig = field(default_factory=FelixConfig)      # FelixConfiguration "default"
    # BGPConfiguration "default": advertised service CIDRs, as written (felix sorts the text)
    service_loop_cidrs: tuple[str, ...] = ()
    # FelixConfiguration "node.<name>": the fields it sets (FelixConfig attribute -> value)
    felix_overrides: dict[str, dict] = field(default_factory=dict)
    _felix_merged: dict = field(default_factory=dict, repr=False, compare=False)
    title: str = ""
    description: str = ""
    warnings: list[str] = field(default_factory=list)

    def felix_for(self, node: str | None) -> FelixConfig:
        """The node's effective FelixConfiguration: felix ranks its per-host datastore source
        (``node.<name>``) above the global one (``default``), field by field
        (config/config_params.go ``DatastorePerHost`` > ``DatastoreGlobal``): a field the
        node's object sets wins, every other comes from ``default``."""
        changes = self.felix_overrides.get(node) if node is not None else None
        if not changes:
            return self.felix
        # Merged over the current default (reading a diags bundle may replace it), once per
        # default object, so readers that key on identity see one object per node.
        cached = self._felix_merged.get(node)
        if cached is None or cached[0] is not self.felix:
            cached = self._felix_merged[node] = (self.felix, replace(self.felix, **changes))
        return cached[1]

    def endpoint_by_ip(self, ip: IPv4Address) -> WorkloadEndpoint | None:
        for ep in self.endpoints.values():
            if ep.pod.ip == ip:
                return ep
        return None

    def node_by_ip(self, ip: IPv4Address) -> Node | None:
        for node in self.nodes.values():
            if node.address.ip == ip:
                return node
        return None
