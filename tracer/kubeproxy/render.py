"""The rules kube-proxy (iptables mode) programs on a node, as the typed rule IR.

Follows ``syncProxyRules`` in kubernetes ``pkg/proxy/iptables/proxier.go`` (v1.29-v1.33 agree
on everything rendered here) with kube-proxy's defaults: masquerade bit 14 (mark ``0x4000``),
``--random-fully`` available, ``nodePortAddresses`` unset (NodePorts on every local address,
``localhostNodePorts`` on, hence KUBE-FIREWALL), ``nf_conntrack_tcp_be_liberal`` off (the
INVALID drop in KUBE-FORWARD), fewer than 1000 endpoints (comments kept), and a
cluster-CIDR local-traffic detector whose CIDR covers the enabled IPPools. Not modelled:
``Local`` traffic policies, session affinity, external and load-balancer IPs.

Rules are built the way kube-proxy writes them (comment first) and stored normalised, i.e.
as ``iptables-save`` prints them back.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, collapse_addresses

from tracer.dataplane.iptables_save import normalise_rule
from tracer.dataplane.ir import (
    BUILTIN_CHAINS, AddressMatch, AddrTypeMatch, Chain, Cidr, ConntrackMatch,
    Dnat, Jump, MarkMatch, Masquerade, Match, PortMatch, ProtocolMatch, ProtocolModuleMatch,
    Provenance, Reject, Rule, SetMark, StatisticMatch, Table, Target, Verdict,
)
from tracer.errors import InputError
from tracer.protocols import PROTOCOL_NUMBERS
from tracer.kubeproxy import names
from tracer.kubeproxy.services import ServicePortView, service_ports
from tracer.model.cluster import Cluster

MASQ_MARK = 0x4000                 # 1 << --iptables-masquerade-bit (default 14)

SERVICES = "KUBE-SERVICES"
EXTERNAL_SERVICES = "KUBE-EXTERNAL-SERVICES"
NODEPORTS = "KUBE-NODEPORTS"
POSTROUTING = "KUBE-POSTROUTING"
MARK_MASQ = "KUBE-MARK-MASQ"
FORWARD = "KUBE-FORWARD"
PROXY_FIREWALL = "KUBE-PROXY-FIREWALL"
CANARY = "KUBE-PROXY-CANARY"
KUBELET_FIREWALL = "KUBE-FIREWALL"

_NODEPORTS_LAST = ("kubernetes service nodeports; NOTE: this must be the last rule in this "
                   "chain")
_PROV = Provenance(role="kube-proxy", source="pkg/proxy/iptables/proxier.go")

# iptablesJumpChains then iptablesKubeletJumpChains: (table, kernel chain, target, comment,
# ctstate NEW first?). Each is ensured with EnsureRule(Prepend) when missing.
_JUMPS: tuple[tuple[Table, str, str, str, bool], ...] = (
    (Table.FILTER, "INPUT", EXTERNAL_SERVICES, "kubernetes externally-visible service portals",
     True),
    (Table.FILTER, "FORWARD", EXTERNAL_SERVICES,
     "kubernetes externally-visible service portals", True),
    (Table.FILTER, "INPUT", NODEPORTS, "kubernetes health check service ports", False),
    (Table.FILTER, "FORWARD", SERVICES, "kubernetes service portals", True),
    (Table.FILTER, "OUTPUT", SERVICES, "kubernetes service portals", True),
    (Table.FILTER, "FORWARD", FORWARD, "kubernetes forwarding rules", False),
    (Table.FILTER, "INPUT", PROXY_FIREWALL, "kubernetes load balancer firewall", True),
    (Table.FILTER, "OUTPUT", PROXY_FIREWALL, "kubernetes load balancer firewall", True),
    (Table.FILTER, "FORWARD", PROXY_FIREWALL, "kubernetes load balancer firewall", True),
    (Table.NAT, "OUTPUT", SERVICES, "kubernetes service portals", False),
    (Table.NAT, "PREROUTING", SERVICES, "kubernetes service portals", False),
    (Table.NAT, "POSTROUTING", POSTROUTING, "kubernetes postrouting rules", False),
    (Table.FILTER, "INPUT", KUBELET_FIREWALL, "", False),
    (Table.FILTER, "OUTPUT", KUBELET_FIREWALL, "", False),
)
# kubelet starts first and has already hooked KUBE-FIREWALL (kubelet_network_linux.go), so
# kube-proxy finds those jumps present and prepends its own above them.
_KUBELET_FIRST = ((Table.FILTER, "INPUT"), (Table.FILTER, "OUTPUT"))


# ----------------------------------------------------------------------------- rule helpers


def _rule(*matches: Match, target: Target, comment: str | None = None,
          comment_at: int = 0) -> Rule:
    """A rule spelt as kube-proxy writes it (``comment_at``: how many matches precede the
    ``-m comment``), normalised to iptables-save's order."""
    comments = (comment,) if comment else ()
    return normalise_rule(Rule(matches=matches, target=target, comments=comments,
                               provenance=_PROV, comment_at=comment_at))


def _dst(ip: IPv4Address | str) -> AddressMatch:
    return AddressMatch("dst", Cidr.parse(f"{ip}/32" if "/" not in str(ip) else str(ip)))


def _proto(protocol: str) -> ProtocolMatch:
    return ProtocolMatch(PROTOCOL_NUMBERS[protocol])


def _dport(port: int) -> PortMatch:
    return PortMatch("dst", ((port, port),), multiport=False)


def _new() -> ConntrackMatch:
    return ConntrackMatch(frozenset({"NEW"}))


_LOCAL_DST = AddrTypeMatch(dst_type="LOCAL")
_OR_MASQ = SetMark(MASQ_MARK, MASQ_MARK)      # --or-mark: (mark & ~m) ^ m == mark | m
_XOR_MASQ = SetMark(MASQ_MARK, 0)             # --xor-mark: mask 0, value m


# ----------------------------------------------------------------------------- entry point


def render_kube_proxy(cluster: Cluster, node: str) -> dict[Table, dict[str, Chain]]:
    """kube-proxy's chains on ``node`` plus, under each kernel chain's name, the jump rules it
    (and kubelet) put there, in their order within that chain."""
    if node not in cluster.nodes:
        known = ", ".join(sorted(cluster.nodes)) or "none"
        raise InputError(f"unknown node {node!r} (nodes: {known})")
    nat: dict[str, list[Rule]] = {SERVICES: [], NODEPORTS: [], POSTROUTING: _postrouting(),
                                  MARK_MASQ: [_rule(target=_OR_MASQ)]}
    filt: dict[str, list[Rule]] = {SERVICES: [], EXTERNAL_SERVICES: [], FORWARD: [],
                                   NODEPORTS: [], PROXY_FIREWALL: [],
                                   KUBELET_FIREWALL: [_localnet_rule()]}
    cidr = cluster_cidr(cluster)
    for view in service_ports(cluster):
        _service(view, cidr, nat, filt)
    # Tail call to the NodePorts for every local address (nodePortAddresses unset).
    nat[SERVICES].append(_rule(_LOCAL_DST, target=Jump(NODEPORTS), comment=_NODEPORTS_LAST))
    filt[FORWARD] += _forward_rules()
    tables: dict[Table, dict[str, Chain]] = {Table.MANGLE: {}, Table.NAT: {}, Table.FILTER: {}}
    for (table, kernel), rules in sorted(_hooks().items(), key=_kernel_order):
        tables[table][kernel] = Chain(kernel, tuple(rules), policy="ACCEPT")
    tables[Table.NAT].update(_chains(nat))
    tables[Table.FILTER].update(_chains(filt))
    for table in tables:                       # ipt.Monitor's canaries, empty by design
        tables[table][CANARY] = Chain(CANARY)
    return tables


def _kernel_order(item: tuple[tuple[Table, str], list[Rule]]) -> int:
    (table, kernel), _rules = item
    return BUILTIN_CHAINS[table].index(kernel)


def _chains(rules: dict[str, list[Rule]]) -> dict[str, Chain]:
    return {name: Chain(name, tuple(chain_rules)) for name, chain_rules in rules.items()}


def cluster_cidr(cluster: Cluster) -> IPv4Network | None:
    """The ``--cluster-cidr`` a Calico cluster gives kube-proxy: the enabled IPPools, or the
    smallest prefix covering them all when they are not one network."""
    pools = list(collapse_addresses(p.cidr for p in cluster.ippools.values() if not p.disabled))
    if not pools:
        return None
    net = pools[0]
    while not all(p.subnet_of(net) for p in pools):
        net = net.supernet()
    return net


# ----------------------------------------------------------------------------- fixed chains


def _postrouting() -> list[Rule]:
    return [
        _rule(MarkMatch(MASQ_MARK, MASQ_MARK, negated=True), target=Verdict("RETURN")),
        # Clear the mark so a packet re-entering the stack is not masqueraded twice.
        _rule(target=_XOR_MASQ),
        _rule(target=Masquerade(random_fully=True),
              comment="kubernetes service traffic requiring SNAT"),
    ]


def _localnet_rule() -> Rule:
    """Mitigates route_localnet (issue 90259): nothing from off-host may reach 127/8."""
    return _rule(_dst("127.0.0.0/8"), AddressMatch("src", Cidr.parse("127.0.0.0/8"), True),
                 ConntrackMatch(frozenset({"RELATED", "ESTABLISHED", "DNAT"}), negated=True),
                 target=Verdict("DROP"), comment="block incoming localnet connections")


def _forward_rules() -> list[Rule]:
    return [
        _rule(ConntrackMatch(frozenset({"INVALID"})), target=Verdict("DROP")),
        _rule(MarkMatch(MASQ_MARK, MASQ_MARK), target=Verdict("ACCEPT"),
              comment="kubernetes forwarding rules"),
        _rule(ConntrackMatch(frozenset({"RELATED", "ESTABLISHED"})), target=Verdict("ACCEPT"),
              comment="kubernetes forwarding conntrack rule"),
    ]


def _hooks() -> dict[tuple[Table, str], list[Rule]]:
    """Replay the EnsureRule(Prepend) calls: each missing jump goes to position 1."""
    chains: dict[tuple[Table, str], list[Rule]] = {}
    jumps = [_jump_rule(*j) for j in _JUMPS]
    for (table, kernel, target, _comment, _new_only), rule in zip(_JUMPS, jumps):
        chain = chains.setdefault((table, kernel), [])
        if target == KUBELET_FIREWALL and (table, kernel) in _KUBELET_FIRST:
            continue                           # added below, as kubelet did before us
        chain.insert(0, rule)
    for key in _KUBELET_FIRST:
        chains[key].append(_jump_rule(key[0], key[1], KUBELET_FIREWALL, "", False))
    return chains


def _jump_rule(table: Table, kernel: str, target: str, comment: str, new_only: bool) -> Rule:
    matches = (_new(),) if new_only else ()
    return _rule(*matches, target=Jump(target), comment=comment or None,
                 comment_at=len(matches))


# ----------------------------------------------------------------------------- per service


def _service(view: ServicePortView, cidr: IPv4Network | None, nat: dict[str, list[Rule]],
             filt: dict[str, list[Rule]]) -> None:
    proto, name = view.protocol, view.name
    ip_port = (_dst(view.cluster_ip), _proto(proto), _dport(view.port.port))
    if not view.endpoints:
        # No endpoints anywhere: no nat chains, only REJECTs in filter.
        comment = f"{name} has no endpoints"
        filt[SERVICES].append(_rule(*ip_port, target=Reject(), comment=comment))
        if view.node_port:
            filt[EXTERNAL_SERVICES].append(_rule(
                _proto(proto), _LOCAL_DST, _dport(view.node_port), target=Reject(),
                comment=comment))
        return
    svc_chain = view.svc_chain
    nat[SERVICES].append(_rule(*ip_port, target=Jump(svc_chain), comment=f"{name} cluster IP"))
    if view.node_port:
        nat[NODEPORTS].append(_rule(_proto(proto), _dport(view.node_port),
                                    target=Jump(view.ext_chain), comment=name))
    svc_rules: list[Rule] = []
    if cidr is not None:
        # Masquerade off-cluster sources reaching the cluster IP (they may bounce off-node).
        svc_rules.append(_rule(*ip_port, AddressMatch("src", Cidr.parse(str(cidr)), True),
                               target=Jump(MARK_MASQ), comment=f"{name} cluster IP"))
    if view.node_port:
        nat[view.ext_chain] = [
            _rule(target=Jump(MARK_MASQ),
                  comment=f"masquerade traffic for {name} external destinations"),
            _rule(target=Jump(svc_chain)),
        ]
    svc_rules += _endpoint_dispatch(view)
    nat[svc_chain] = svc_rules
    for backend in view.endpoints:
        nat[view.sep_chain(backend)] = [
            # Hairpin: a backend reaching itself through the Service must be SNATed.
            _rule(AddressMatch("src", Cidr.parse(f"{backend.ip}/32")), target=Jump(MARK_MASQ),
                  comment=name),
            _rule(_proto(proto), ProtocolModuleMatch(proto), target=Dnat(backend.address),
                  comment=name),
        ]


def _endpoint_dispatch(view: ServicePortView) -> list[Rule]:
    """writeServiceToEndpointRules: endpoint i of n matches with probability 1/(n-i); the last
    rule is unconditional."""
    rules = []
    count = len(view.endpoints)
    for index, backend in enumerate(view.endpoints):
        matches: tuple[Match, ...] = ()
        if index < count - 1:
            text = names.probability(count - index)
            matches = (StatisticMatch("random", probability=names.quantised(text)),)
        rules.append(_rule(*matches, target=Jump(view.sep_chain(backend)),
                           comment=f"{view.name} -> {backend.address}"))
    return rules
