"""Group pods into classes that every policy decision treats identically.

Two workloads land in the same class when nothing any rule or policy can look at tells them
apart:

- their labels projected on the label keys some selector reads (policy selectors, rule
  selectors and NotSelectors, of policies and profiles);
- their profile list (it drives the fall-through after the tiers);
- their named container ports whose names some rule mentions;
- for their IP: which rule CIDRs contain it, and which rule selectors match a host endpoint
  or network set covering it (a selector IP set holds the address if any object covering it
  matches);
- for an IP shared by several workloads: the IP itself (the owner is looked up by address).

Evaluating one representative pair per class pair is then exact for every pod pair.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

from tracer.model.cluster import EntityRule, Rule, WorkloadEndpoint
from tracer.policy.evaluate import PolicyIndex, combine_selectors
from tracer.selector.selector import parse_selector


@dataclass(frozen=True)
class PodClasses:
    """``class_of[i]`` is the class of ``pods[i]``; ``representatives[c]`` evaluates class c."""

    pods: tuple[WorkloadEndpoint, ...]
    class_of: tuple[int, ...]
    representatives: tuple[WorkloadEndpoint, ...]

    @property
    def count(self) -> int:
        return len(self.representatives)


@dataclass(frozen=True)
class _Features:
    """What the cluster's policies can observe about an endpoint."""

    label_keys: tuple[str, ...]
    port_names: frozenset[str]
    nets: tuple[IPv4Network, ...]
    rule_selectors: tuple[str, ...]
    extra_cache: dict = field(default_factory=dict, compare=False)
    # ``nets`` as (network, mask) integers for IPv4 (None for IPv6, which no IPv4 address is
    # in): the class key tests every pod against every net.
    net_masks: tuple = field(init=False, compare=False, default=())

    def __post_init__(self) -> None:
        masks = tuple((int(n.network_address), int(n.netmask)) if n.version == 4 else None
                      for n in self.nets)
        object.__setattr__(self, "net_masks", masks)


def classify(index: PolicyIndex, pods: Iterable[WorkloadEndpoint]) -> PodClasses:
    """Partition ``pods`` (workload endpoints of ``index``'s cluster) into classes."""
    pods = tuple(pods)
    features = _observed_features(index)
    shared_ips = {ip for ip in {ep.pod.ip for ep in pods} if len(index.endpoints_at(ip)) > 1}
    class_ids: dict[tuple, int] = {}
    class_of: list[int] = []
    representatives: list[WorkloadEndpoint] = []
    for pod in pods:
        # The owner of the address is what evaluate_connection looks up.
        owner = index.endpoint_at(pod.pod.ip) or pod
        key = _class_key(index, owner, features, shared_ips)
        if key not in class_ids:
            class_ids[key] = len(representatives)
            representatives.append(owner)
        class_of.append(class_ids[key])
    return PodClasses(pods, tuple(class_of), tuple(representatives))


def _class_key(index: PolicyIndex, ep: WorkloadEndpoint, features: _Features,
               shared_ips: set[IPv4Address]) -> tuple:
    ip = ep.pod.ip
    labels = tuple(ep.labels.get(key) for key in features.label_keys)
    ports = tuple(sorted((cp.name, cp.protocol.upper(), cp.port) for cp in ep.pod.ports
                         if cp.name in features.port_names))
    if ip.version == 4:
        address = int(ip)
        in_nets = tuple(m is not None and address & m[1] == m[0] for m in features.net_masks)
    else:
        in_nets = tuple(ip in net for net in features.nets)
    extra = _extra_matches(index, ep, features)
    shared = ip if ip in shared_ips else None
    # What its node's FelixConfiguration makes cali-fw-* drop before any policy.
    felix = index.cluster.felix_for(ep.pod.node)
    encap = (felix.vxlan_port, felix.allow_vxlan_packets_from_workloads,
             felix.allow_ipip_packets_from_workloads)
    return (labels, ep.profiles, ports, in_nets, extra, shared, encap)


def _extra_matches(index: PolicyIndex, ep: WorkloadEndpoint, features: _Features) -> frozenset:
    """Which rule selectors match one of the address's other label sets (host endpoints,
    network sets): all that those sets can change about the address's IP-set membership."""
    others = tuple(labels for labels in index.label_sets(ep.pod.ip) if labels is not ep.labels)
    if not others:
        return frozenset()
    cache_key = tuple(map(id, others))
    cached = features.extra_cache.get(cache_key)
    if cached is None:
        cached = frozenset(
            position for position, text in enumerate(features.rule_selectors)
            if any(parse_selector(text).matches(labels) for labels in others))
        features.extra_cache[cache_key] = cached
    return cached


def _observed_features(index: PolicyIndex) -> _Features:
    keys: set[str] = set()
    names: set[str] = set()
    nets: set[IPv4Network] = set()
    selectors: set[str] = set()
    for policy in index.ordered_policies:
        keys |= parse_selector(policy.selector).label_keys
    for rule in _all_rules(index):
        for entity in (rule.source, rule.destination):
            _collect_entity(entity, keys, names, nets, selectors)
    return _Features(tuple(sorted(keys)), frozenset(names),
                     tuple(sorted(nets, key=lambda n: (int(n.network_address), n.prefixlen))),
                     tuple(sorted(selectors)))


def _all_rules(index: PolicyIndex) -> Iterable[Rule]:
    for policy in index.ordered_policies:
        yield from policy.ingress
        yield from policy.egress
    for profile in index.cluster.profiles.values():
        yield from profile.ingress
        yield from profile.egress


def _collect_entity(entity: EntityRule, keys: set[str], names: set[str],
                    nets: set[IPv4Network], selectors: set[str]) -> None:
    positive, negative = combine_selectors(entity.selector, entity.not_selector)
    for text in (positive, negative):
        if text:
            keys |= parse_selector(text).label_keys
            selectors.add(text)
    names.update(p.name for p in entity.ports + entity.not_ports if p.is_named)
    nets.update(entity.nets)
    nets.update(entity.not_nets)
