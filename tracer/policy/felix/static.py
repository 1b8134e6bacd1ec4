"""felix's static chains (felix/rules/static.go) and its hooks into the kernel chains
(setUpIptablesNormal in felix/dataplane/linux/int_dataplane.go).

IPv4 only, iptables mode, no IPVS/OpenStack/BPF/flow logs.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import ip_network

from tracer.dataplane.interfaces import IPIP_DEVICE, VXLAN_DEVICE
from tracer.dataplane.ir import Table
from tracer.model.cluster import ProtoPort
from tracer.policy.felix import builder as b
from tracer.policy.felix.builder import M, FChain, FRule
from tracer.policy.felix.context import Ctx, static_prov

PROTO_IPIP = 4
PROTO_UDP = 17
WILDCARD = "+"


@dataclass(frozen=True)
class Hooks:
    """Rules felix puts into one kernel chain: ``inserted`` (InsertOrAppendRules, placed per
    ChainInsertMode) and ``appended`` (AppendRules, always at the end)."""

    inserted: tuple[FRule, ...] = ()
    appended: tuple[FRule, ...] = ()


def _r(match: M | None = None, action: b.Action | None = None, *comments: str,
       role: str = "static") -> FRule:
    return FRule(match or M(), action, tuple(comments), static_prov(role))


# ---------------------------------------------------------------------------- hooks


def kernel_hooks(ctx: Ctx) -> dict[Table, dict[str, Hooks]]:
    """setUpIptablesNormal: one jump per kernel chain; FORWARD and nat POSTROUTING appends."""
    marks = ctx.marks
    forward_appends = (
        _r(M().mark_set(marks.accept), ctx.filter_allow, "Policy explicitly accepted packet."),
        # Tell mangle POSTROUTING this packet was forwarded (skip host-endpoint policy).
        _r(None, b.set_mark(marks.accept)),
    )
    return {
        Table.RAW: {"PREROUTING": Hooks((_r(None, b.jump("cali-PREROUTING")),)),
                    "OUTPUT": Hooks((_r(None, b.jump("cali-OUTPUT")),))},
        Table.FILTER: {"INPUT": Hooks((_r(None, b.jump("cali-INPUT")),)),
                       "FORWARD": Hooks((_r(None, b.jump("cali-FORWARD")),), forward_appends),
                       "OUTPUT": Hooks((_r(None, b.jump("cali-OUTPUT")),))},
        # POSTROUTING is appended so kube-proxy's MASQ and mark clearing run first.
        Table.NAT: {"PREROUTING": Hooks((_r(None, b.jump("cali-PREROUTING")),)),
                    "OUTPUT": Hooks((_r(None, b.jump("cali-OUTPUT")),)),
                    "POSTROUTING": Hooks((), (_r(None, b.jump("cali-POSTROUTING")),))},
        Table.MANGLE: {"PREROUTING": Hooks((_r(None, b.jump("cali-PREROUTING")),)),
                       "POSTROUTING": Hooks((_r(None, b.jump("cali-POSTROUTING")),))},
    }


# ---------------------------------------------------------------------------- filter


def filter_chains(ctx: Ctx) -> list[FChain]:
    return [forward_chain(ctx), input_chain(ctx), workload_to_host_chain(ctx),
            failsafe_in(ctx, "filter"), output_chain(ctx), failsafe_out(ctx, "filter")]


def forward_chain(ctx: Ctx) -> FChain:
    m = ctx.marks
    rules = [
        # Keep the accept bit: raw/pre-DNAT policy may have set it.
        _r(None, b.clear_mark(m.all_calico & ~m.accept)),
        _r(M().mark_clear(m.accept), b.jump("cali-from-hep-forward")),
    ]
    for prefix in ctx.prefixes:
        rules += [_r(M().in_iface(prefix + WILDCARD), b.jump("cali-from-wl-dispatch")),
                  _r(M().out_iface(prefix + WILDCARD), b.jump("cali-to-wl-dispatch"))]
    rules += [_r(None, b.jump("cali-to-hep-forward")), _r(None, b.jump("cali-cidr-block"))]
    return FChain("cali-FORWARD", tuple(rules))


def input_chain(ctx: Ctx) -> FChain:
    m, rules = ctx.marks, []
    if ctx.ipip_enabled:
        rules += [
            _r(M().protocol(PROTO_IPIP).ipset(ctx.set_name("all-hosts-net"), "src")
               .dst_addr_type(), ctx.filter_allow, "Allow IPIP packets from Calico hosts"),
            _r(M().protocol(PROTO_IPIP), ctx.deny,
               f"{ctx.deny_word} IPIP packets from non-Calico hosts", role="tunnel-peer-drop"),
        ]
    if ctx.vxlan_enabled:
        port = ctx.felix.vxlan_port
        rules += [
            _r(M().protocol(PROTO_UDP).ports("dst", ((port, port),))
               .ipset(ctx.set_name("all-vxlan-net"), "src").dst_addr_type(),
               ctx.filter_allow, "Allow IPv4 VXLAN packets from allowed hosts"),
            # static.go uses r.Drop() here, not the configurable deny action.
            _r(M().protocol(PROTO_UDP).ports("dst", ((port, port),)).dst_addr_type(),
               b.DROP, "Drop IPv4 VXLAN packets from non-allowed hosts", role="tunnel-peer-drop"),
        ]
    if ctx.wireguard:
        port = ctx.felix.wireguard_listening_port
        rules.append(_r(M().protocol(PROTO_UDP).ports("dst", ((port, port),)).dst_addr_type(),
                        ctx.filter_allow, "Allow incoming IPv4 Wireguard packets"))
    for prefix in ctx.prefixes:
        rules.append(_r(M().in_iface(prefix + WILDCARD), b.goto("cali-wl-to-host")))
    rules += [
        _r(M().mark_set(m.accept), ctx.filter_allow),
        _r(None, b.clear_mark(m.all_calico)),
        _r(None, b.jump("cali-from-host-endpoint")),
        _r(M().mark_set(m.accept), ctx.filter_allow, "Host endpoint policy accepted packet."),
    ]
    return FChain("cali-INPUT", tuple(rules))


def workload_to_host_chain(ctx: Ctx) -> FChain:
    action = {"Drop": b.DROP, "Accept": b.ACCEPT, "Return": b.RETURN}[
        ctx.felix.default_endpoint_to_host_action]
    return FChain("cali-wl-to-host", (
        _r(None, b.jump("cali-from-wl-dispatch")),
        _r(None, action, "Configured DefaultEndpointToHostAction"),
    ))


def output_chain(ctx: Ctx) -> FChain:
    m = ctx.marks
    rules = [_r(M().mark_set(m.accept), ctx.filter_allow)]
    for prefix in ctx.prefixes:
        # Host -> local workload is not policed by the workload's ingress policy.
        rules.append(_r(M().out_iface(prefix + WILDCARD), b.RETURN))
    if ctx.ipip_enabled:
        rules.append(_r(M().protocol(PROTO_IPIP).ipset(ctx.set_name("all-hosts-net"), "dst")
                        .src_addr_type(), ctx.filter_allow,
                        "Allow IPIP packets to other Calico hosts"))
    if ctx.vxlan_enabled:
        port = ctx.felix.vxlan_port
        rules.append(_r(M().protocol(PROTO_UDP).ports("dst", ((port, port),)).src_addr_type()
                        .ipset(ctx.set_name("all-vxlan-net"), "dst"), ctx.filter_allow,
                        "Allow IPv4 VXLAN packets to other allowed hosts"))
    if ctx.wireguard:
        port = ctx.felix.wireguard_listening_port
        rules.append(_r(M().protocol(PROTO_UDP).ports("dst", ((port, port),)).src_addr_type(),
                        ctx.filter_allow, "Allow outgoing IPv4 Wireguard packets"))
    rules += [
        _r(None, b.clear_mark(m.all_calico)),
        _r(M().ct_state("DNAT", negated=True), b.jump("cali-to-host-endpoint")),
        _r(M().mark_set(m.accept), ctx.filter_allow, "Host endpoint policy accepted packet."),
    ]
    return FChain("cali-OUTPUT", tuple(rules))


def _failsafe_rules(entries: tuple[ProtoPort, ...], ports: str, net: str) -> list[FRule]:
    """One ACCEPT per entry: the protocol, the port on the ``ports`` side, the entry's net on
    the ``net`` side; an IPv6 net gives no rule in these IPv4 chains."""
    rules = []
    for entry in entries:
        if entry.ip_version == 6:
            continue
        match = M().protocol(entry.protocol).ports(ports, ((entry.port, entry.port),))
        if entry.net is not None:
            match = match.net(net, entry.net)
        rules.append(_r(match, b.ACCEPT, role="failsafe"))
    return rules


def failsafe_in(ctx: Ctx, table: str) -> FChain:
    """failsafeInChain: inbound ports as destination ports from their net; raw also accepts
    outbound ports as source ports (the replies), still from the net (felix's SourceNet)."""
    rules = _failsafe_rules(ctx.felix.failsafe_inbound_host_ports, "dst", "src")
    if table == "raw":
        rules += _failsafe_rules(ctx.felix.failsafe_outbound_host_ports, "src", "src")
    return FChain("cali-failsafe-in", tuple(rules))


def failsafe_out(ctx: Ctx, table: str) -> FChain:
    """failsafeOutChain: outbound ports as destination ports to their net; raw also accepts
    inbound ports as source ports, to the net (felix's DestNet)."""
    rules = _failsafe_rules(ctx.felix.failsafe_outbound_host_ports, "dst", "dst")
    if table == "raw":
        rules += _failsafe_rules(ctx.felix.failsafe_inbound_host_ports, "src", "dst")
    return FChain("cali-failsafe-out", tuple(rules))


# ---------------------------------------------------------------------------- raw


def raw_chains(ctx: Ctx) -> list[FChain]:
    chains = [failsafe_in(ctx, "raw"), failsafe_out(ctx, "raw"), raw_prerouting(ctx),
              wireguard_incoming_mark(ctx), raw_output(ctx)]
    return chains


def raw_prerouting(ctx: Ctx) -> FChain:
    m = ctx.marks
    rules = [_r(None, b.clear_mark(m.all_calico))]
    # WireguardEncryptHostTraffic (off by default) would jump to cali-wireguard-incoming-mark.
    if ctx.vxlan_enabled:
        rules.append(_r(M().protocol("udp").dport(ctx.felix.vxlan_port), b.NOTRACK))
    for prefix in ctx.prefixes:
        rules.append(_r(M().in_iface(prefix + WILDCARD), b.set_mark(m.scratch0)))
    rules += [
        _r(M().mark_with_mask(m.scratch0, m.scratch0), b.jump("cali-rpf-skip"), role="rpf"),
        _r(M().mark_with_mask(m.scratch0, m.scratch0).rpf_failed(), ctx.deny, role="rpf"),
        _r(M().mark_clear(m.scratch0), b.jump("cali-from-host-endpoint")),
        _r(M().mark_set(m.accept), b.ACCEPT),
    ]
    return FChain("cali-PREROUTING", tuple(rules))


def wireguard_incoming_mark(ctx: Ctx) -> FChain:
    rules = [_r(M().in_iface("lo"), b.RETURN),
             _r(M().in_iface(ctx.felix.wireguard_interface_name), b.RETURN),
             _r(M().in_iface("wg-v6.cali"), b.RETURN)]
    rules += [_r(M().in_iface(p + WILDCARD), b.RETURN) for p in ctx.prefixes]
    rules.append(_r(None, b.set_mark(ctx.marks.wireguard or ctx.marks.scratch1)))
    return FChain("cali-wireguard-incoming-mark", tuple(rules))


def raw_output(ctx: Ctx) -> FChain:
    m = ctx.marks
    rules = [_r(None, b.clear_mark(m.all_calico)), _r(None, b.jump("cali-to-host-endpoint"))]
    if ctx.vxlan_enabled:
        rules.append(_r(M().protocol("udp").dport(ctx.felix.vxlan_port), b.NOTRACK))
    rules.append(_r(M().mark_set(m.accept), b.ACCEPT))
    return FChain("cali-OUTPUT", tuple(rules))


def rpf_skip_chain() -> FChain:
    """endpoint_mgr updateRPFSkipChain: per-pod allowed source prefixes (none modelled)."""
    return FChain("cali-rpf-skip")


# ---------------------------------------------------------------------------- mangle


def mangle_chains(ctx: Ctx) -> list[FChain]:
    chains = [failsafe_in(ctx, "mangle"), failsafe_out(ctx, "mangle"),
              mangle_prerouting(ctx), mangle_postrouting(ctx)]
    if ctx.knob.dscp_rule:
        chains.append(FChain("cali-egress-dscp"))   # dscp_mgr: no QoS annotations modelled
    return chains


def mangle_prerouting(ctx: Ctx) -> FChain:
    m = ctx.marks
    return FChain("cali-PREROUTING", (
        _r(M().ct_state("RELATED,ESTABLISHED"), ctx.mangle_allow, role="conntrack-accept"),
        _r(M().mark_set(m.accept), ctx.mangle_allow),
        _r(None, b.jump("cali-from-host-endpoint")),
        _r(M().mark_set(m.accept), ctx.mangle_allow, "Host endpoint policy accepted packet."),
    ))


def mangle_postrouting(ctx: Ctx) -> FChain:
    m, rules = ctx.marks, []
    if ctx.knob.dscp_rule:
        rules.append(_r(M().ipset(ctx.set_name("dscp-src-net"), "src")
                        .ipset(ctx.all_pools_set, "dst", negated=True)
                        .ipset(ctx.set_name("this-host"), "dst", negated=True),
                        b.jump("cali-egress-dscp"), "set dscp for traffic leaving cluster."))
    rules += [
        _r(M().mark_set(m.accept), b.RETURN),
        _r(None, b.clear_mark(m.all_calico)),
        _r(M().ct_state("DNAT"), b.jump("cali-to-host-endpoint")),
        _r(M().mark_set(m.accept), b.RETURN, "Host endpoint policy accepted packet."),
    ]
    return FChain("cali-POSTROUTING", tuple(rules))


# ---------------------------------------------------------------------------- nat


def nat_chains(ctx: Ctx) -> list[FChain]:
    return [
        FChain("cali-PREROUTING", (_r(None, b.jump("cali-fip-dnat")),)),
        nat_postrouting(ctx),
        FChain("cali-OUTPUT", (_r(None, b.jump("cali-fip-dnat")),)),
        FChain("cali-fip-dnat"),     # floating IPs: none modelled
        FChain("cali-fip-snat"),
    ]


def nat_postrouting(ctx: Ctx) -> FChain:
    rules = [_r(None, b.jump("cali-fip-snat")), _r(None, b.jump("cali-nat-outgoing"))]
    tunnels = []
    if ctx.ipip_enabled and ctx.node.ipip_tunnel_address is not None:
        tunnels.append(IPIP_DEVICE)
    if ctx.vxlan_enabled and ctx.node.vxlan_tunnel_address is not None:
        tunnels.append(VXLAN_DEVICE)
    if ctx.wireguard and ctx.felix.wireguard_interface_name:
        tunnels.append(ctx.felix.wireguard_interface_name)
    for tunnel in tunnels:
        # Host-sourced packets leaving through a tunnel with a non-tunnel local source IP.
        rules.append(_r(M().out_iface(tunnel).src_addr_type(negated=True, limit_out=True)
                        .src_addr_type(), b.masquerade(True), role="nat-outgoing"))
    return FChain("cali-POSTROUTING", tuple(rules))


def cidr_block_chain(ctx: Ctx) -> FChain:
    """ServiceLoopPrevention: traffic forwarded to an advertised service CIDR (the default
    BGPConfiguration's) that kube-proxy did not DNAT is dropped or rejected, so it cannot loop
    between the node and its upstream router; empty when nothing is advertised or the
    prevention is Disabled (rules/nat.go ``BlockedCIDRsToIptablesChains``)."""
    action = {"Drop": b.DROP, "Reject": b.REJECT}.get(ctx.felix.service_loop_prevention)
    if action is None:
        return FChain("cali-cidr-block")
    prov = static_prov("service-loop-prevention", "rules/nat.go")
    rules = [FRule(M().net("dst", str(ip_network(cidr, strict=False))), action, (), prov)
             for cidr in ctx.facts.cluster.service_loop_cidrs]
    return FChain("cali-cidr-block", tuple(rules))
