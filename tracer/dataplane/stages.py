"""The pipeline's stages: each a small class with its declared facts and one job.

A stage names itself, the kernel code it models, and the drop reasons it can emit (STYLE
patterns 1 and 3); :func:`declared_reasons` lists them all, and a test checks that every drop
a trace records comes from a stage that declares its reason. Stages read the frozen node and
write only the walk (the packet's state at this node) and the run's state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import ClassVar, Protocol

from tracer.conntrack.reference import ConntrackTable
from tracer.conntrack.tuples import PacketKey
from tracer.dataplane.classify import NETFILTER_REASONS, classify_drop
from tracer.dataplane.hooks import CONNTRACK_AFTER, HOOK_TABLES, nat_applies
from tracer.dataplane.interpreter import PacketView, TableResult, run_hook
from tracer.dataplane.ir import Dnat, Masquerade, Snat, Table
from tracer.dataplane.node import NodeDataplane, NodeEnvironment
from tracer.dataplane.packet import Packet
from tracer.dataplane.reasons import DropReason
from tracer.dataplane.routing import Route
from tracer.dataplane.state import RunState
from tracer.dataplane.trace import (ConntrackRecord, DeliverRecord, DropRecord, HookRecord,
                                    MtuRecord, NatRecord, Record, RouteRecord)
from tracer.protocols import ICMP, TCP


class TableRunner(Protocol):
    """Runs one table's built-in chain for one packet: the reference interpreter, or an
    engine that answers the same contract (``tracer.engine``)."""

    def __call__(self, node: NodeDataplane, table: Table, hook: str, view: PacketView,
                 env: NodeEnvironment) -> TableResult: ...


def reference_tables(node: NodeDataplane, table: Table, hook: str, view: PacketView,
                     env: NodeEnvironment) -> TableResult:
    return run_hook(node.ruleset, table, hook, view, env)


@dataclass
class Walk:
    """The packet's state inside one node; the stages append frozen records to ``records``."""

    node: NodeDataplane
    env: NodeEnvironment
    state: RunState
    iif: str | None
    packet: Packet
    mark: int = 0
    ctstate: str = "NEW"
    ct_status: frozenset[str] = frozenset()
    ct_entry: int | None = None
    ct_direction: str = "original"
    nat_bound: bool = False
    notrack: bool = False
    records: list[Record] = field(default_factory=list)
    tables: TableRunner = reference_tables

    @property
    def conntrack(self) -> ConntrackTable:
        return self.state.conntrack(self.node.name)


class Dropped(Exception):
    """Raised by a stage that drops the packet; the pipeline records and counts it."""

    def __init__(self, record: DropRecord):
        super().__init__(record.reason)
        self.record = record


class Stage:
    name: ClassVar[str]
    models: ClassVar[str]                      # the kernel or Calico code it mirrors
    reasons: ClassVar[frozenset[DropReason]] = frozenset()

    @classmethod
    def drop(cls, walk: Walk, reason: DropReason, detail: str, *, event=None,
             table: str | None = None) -> Dropped:
        assert reason in cls.reasons, f"{cls.name} does not declare {reason}"
        record = DropRecord(walk.node.name, reason, detail, event, table, stage=cls.name)
        walk.records.append(record)
        return Dropped(record)


class PodStack(Stage):
    """The source pod's own network stack, before its packet reaches the node."""

    name = "pod"
    models = "the pod's netns: loopback delivery, ip_fragment's EMSGSIZE for DF packets"
    reasons = frozenset({DropReason.MTU_EXCEEDED})

    @classmethod
    def leaves_pod(cls, walk: Walk) -> DeliverRecord | None:
        """None when the packet leaves through eth0; a delivery when it never does."""
        packet = walk.packet
        iface = walk.node.interfaces.get(walk.iif)
        pod = iface.endpoint if iface is not None else None
        if iface is not None and iface.address == packet.dst:
            where = f"pod {pod} (itself, over its own loopback)"
            record = DeliverRecord(walk.node.name, where, "lo", packet)
            walk.records.append(record)
            return record
        if iface is not None and packet.length > iface.mtu and packet.df:
            raise cls.drop(walk, DropReason.MTU_EXCEEDED,
                           f"{packet.length}-byte packet with DF does not fit the pod's eth0 "
                           f"(MTU {iface.mtu}); the pod's own stack refuses it (EMSGSIZE)")
        return None


class Netfilter(Stage):
    """One hook's tables in priority order, with conntrack after raw and NAT bindings."""

    name = "netfilter"
    models = "nf_hook_slow over the hook's tables (ip_tables / nf_tables)"
    reasons = NETFILTER_REASONS

    @classmethod
    def hook(cls, walk: Walk, hook: str, *, oif: str | None) -> None:
        # A runner may run the tables in another order (nftables base-chain priorities).
        for table in getattr(walk.tables, "hook_tables", HOOK_TABLES)[hook]:
            if table is Table.NAT:
                # Bound connections are rewritten by conntrack; the nat rules never run again.
                NatBinding.apply(walk, hook)
                if walk.notrack or not nat_applies(walk.ctstate, walk.nat_bound):
                    continue
            if hook in walk.node.ruleset.tables.get(table, {}):
                cls._table(walk, hook, table, oif)
            if (hook, table) in CONNTRACK_AFTER:
                Conntrack.lookup(walk)

    @classmethod
    def _table(cls, walk: Walk, hook: str, table: Table, oif: str | None) -> None:
        packet = walk.packet
        view = PacketView(
            src=int(packet.src), dst=int(packet.dst), protocol=packet.protocol,
            sport=packet.sport, dport=packet.dport, icmp_type=packet.icmp_type,
            icmp_code=packet.icmp_code, tcp_flags=packet.tcp_flags, iif=walk.iif, oif=oif,
            mark=walk.mark, ct_state="UNTRACKED" if walk.notrack else walk.ctstate,
            ct_status=walk.ct_status)
        result = walk.tables(walk.node, table, hook, view, walk.env)
        walk.records.append(HookRecord(
            node=walk.node.name, hook=hook, table=table.value, packet=packet, iif=walk.iif,
            oif=oif, events=result.events, verdict=result.verdict, mark_before=walk.mark,
            mark_after=view.mark, warnings=result.warnings))
        walk.mark = view.mark
        if result.verdict in ("DROP", "REJECT"):
            reason, detail = classify_drop(result.deciding, table.value)
            if result.verdict == "REJECT":
                detail += " (REJECT: an ICMP error goes back to the sender)"
            raise cls.drop(walk, reason, detail, event=result.deciding, table=table.value)
        if result.notrack:
            walk.notrack = True
        if result.nat is not None:
            NatRule.apply(walk, result.nat, oif)


class Conntrack(Stage):
    """``nf_conntrack_in`` right after raw: the state every later ctstate match sees."""

    name = "conntrack"
    models = "nf_conntrack_in, __nf_conntrack_confirm, nf_ct_delete of unconfirmed entries"
    reasons = frozenset({DropReason.CONNTRACK_FULL})

    @classmethod
    def lookup(cls, walk: Walk) -> None:
        if walk.notrack:
            walk.records.append(ConntrackRecord(walk.node.name, "UNTRACKED",
                                                note="NOTRACK in raw: conntrack skips it"))
            return
        verdict = walk.conntrack.process(conntrack_key(walk.packet), walk.state.now)
        if verdict.dropped:
            raise cls.drop(walk, DropReason.CONNTRACK_FULL,
                           verdict.reason or "conntrack table full")
        walk.ctstate, walk.ct_entry, walk.ct_direction = (verdict.ctstate, verdict.entry_id,
                                                          verdict.direction)
        walk.ct_status = frozenset(
            name for flag, name in (("SRC_NAT", "SNAT"), ("DST_NAT", "DNAT"))
            if flag in verdict.status)
        walk.nat_bound = "CONFIRMED" in verdict.status
        note = verdict.direction + (f", {verdict.reason}" if verdict.reason else "")
        walk.records.append(ConntrackRecord(walk.node.name, verdict.ctstate, verdict.tcp_state,
                                            note=note))

    @staticmethod
    def confirm(walk: Walk) -> None:
        """As the packet leaves (POSTROUTING) or is delivered locally."""
        if walk.ct_entry is not None and not walk.nat_bound:
            walk.conntrack.confirm(walk.ct_entry, walk.state.now)
            walk.nat_bound = True

    @staticmethod
    def discard(walk: Walk) -> None:
        """A dropped packet's unconfirmed entry dies with it."""
        if walk.ct_entry is not None and not walk.nat_bound:
            walk.conntrack.discard(walk.ct_entry)


class NatBinding(Stage):
    """``nf_nat_packet`` for a connection whose NAT is bound: the destination is rewritten
    where DNAT would run (PREROUTING, OUTPUT), the source where SNAT would (POSTROUTING,
    INPUT) — including replies, which is how de-NAT happens."""

    name = "nat-binding"
    models = "nf_nat_packet / nf_nat_manip_pkt"

    @staticmethod
    def apply(walk: Walk, hook: str) -> None:
        if walk.ct_entry is None or not walk.nat_bound:
            return
        rewrite = walk.conntrack.translate(walk.ct_entry, walk.ct_direction)
        before = walk.packet
        if hook in ("PREROUTING", "OUTPUT") and rewrite.dst_changed:
            walk.packet = before.with_(dst=IPv4Address(rewrite.dst),
                                       dport=_port(before, rewrite.dport))
        elif hook in ("POSTROUTING", "INPUT") and rewrite.src_changed:
            walk.packet = before.with_(src=IPv4Address(rewrite.src),
                                       sport=_port(before, rewrite.sport))
        if walk.packet != before:
            kind = "de-NAT" if walk.ct_direction == "reply" else "NAT (bound)"
            walk.records.append(NatRecord(walk.node.name, kind, before, walk.packet,
                                          note="conntrack binding"))


class NatRule(Stage):
    """A DNAT / SNAT / MASQUERADE target hit in the nat table: bind the connection."""

    name = "nat"
    models = "xt_nat / xt_MASQUERADE -> nf_nat_setup_info"

    @staticmethod
    def apply(walk: Walk, target, oif: str | None) -> None:
        before = walk.packet
        table = walk.conntrack if walk.ct_entry is not None else None
        if isinstance(target, Dnat):
            addr, _, port = target.to_destination.partition(":")
            walk.packet = before.with_(dst=IPv4Address(addr),
                                       dport=int(port) if port else before.dport)
            walk.ct_status = walk.ct_status | {"DNAT"}
            kind = "DNAT"
            if table is not None:
                table.dnat(walk.ct_entry, int(walk.packet.dst), walk.packet.dport)
        elif isinstance(target, (Snat, Masquerade)):
            if isinstance(target, Snat):
                address, _, ports = target.to_source.partition(":")
                addr = IPv4Address(address)
                port_range = _port_range(ports) if ports else None
                kind = "SNAT"
            else:
                addr = walk.node.interfaces.source_address(oif, walk.node.underlay_ip)
                port_range = target.to_ports
                kind = "MASQUERADE"
            walk.ct_status = walk.ct_status | {"SNAT"}
            if table is not None:
                table.masquerade(walk.ct_entry, int(addr), walk.state.now,
                                 port_range=port_range)
                rewrite = table.translate(walk.ct_entry, "original")
                walk.packet = before.with_(src=IPv4Address(rewrite.src),
                                           sport=_port(before, rewrite.sport))
            else:
                walk.packet = before.with_(src=addr)
        else:
            return
        walk.records.append(NatRecord(walk.node.name, kind, before, walk.packet))


def _port_range(text: str) -> tuple[int, int]:
    """``P`` or ``P-Q`` of an SNAT target (checked when the rule was read)."""
    low, _, high = text.partition("-")
    return int(low), int(high or low)


class Routing(Stage):
    """The routing decision: policy rules, then the longest prefix in each table."""

    name = "routing"
    models = "fib_lookup (ip_route_input_noref / ip_route_output_key)"
    reasons = frozenset({DropReason.NO_ROUTE})

    @classmethod
    def decide(cls, walk: Walk) -> Route:
        dst = walk.packet.dst
        route = walk.node.routing.lookup(dst, mark=walk.mark)
        if route is None:
            walk.records.append(RouteRecord(walk.node.name, str(dst), None, "no-route", None))
            raise cls.drop(walk, DropReason.NO_ROUTE, f"no route to {dst} on "
                           f"{walk.node.name} (ICMP host unreachable to the sender)")
        if route.kind == "blackhole":
            walk.records.append(RouteRecord(walk.node.name, str(dst), route, "blackhole", None))
            raise cls.drop(walk, DropReason.NO_ROUTE, f"{dst} hits `{route}`: an address in "
                           "this node's IPAM block that no pod holds")
        decision = "local" if route.kind == "local" else "forward"
        walk.records.append(RouteRecord(walk.node.name, str(dst), route, decision, route.dev))
        return route


class Forward(Stage):
    """``ip_forward``'s checks before the FORWARD hook: TTL, then DF against the MTU."""

    name = "forward"
    models = "ip_forward: ip_decrease_ttl, ip_exceeds_mtu -> ICMP frag-needed"
    reasons = frozenset({DropReason.TTL_EXCEEDED, DropReason.MTU_EXCEEDED})

    @classmethod
    def check(cls, walk: Walk, oif: str | None) -> None:
        packet = walk.packet
        if packet.ttl <= 1:
            raise cls.drop(walk, DropReason.TTL_EXCEEDED, "TTL would reach zero when forwarding")
        interfaces = walk.node.interfaces
        mtu = interfaces.mtu(oif)
        fits = packet.length <= mtu
        if not fits or interfaces.is_tunnel(oif):
            walk.records.append(MtuRecord(walk.node.name, oif or "?", mtu, packet.length, fits))
            if not fits and packet.df:
                raise cls.drop(walk, DropReason.MTU_EXCEEDED,
                               f"{packet.length}-byte packet with DF set does not fit {oif} "
                               f"(MTU {mtu}); the node sends ICMP fragmentation-needed "
                               f"(next-hop MTU {mtu}) to {packet.src}")
        walk.packet = packet.with_(ttl=packet.ttl - 1)


class Delivery(Stage):
    """Handing the packet to a local pod's veth; a workload route without its pod drops."""

    name = "delivery"
    models = "dev_queue_xmit on a cali veth (the pod's eth0 receives it)"
    reasons = frozenset({DropReason.NO_ROUTE})

    @classmethod
    def to_workload(cls, walk: Walk, oif: str) -> DeliverRecord:
        iface = walk.node.interfaces.get(oif)
        if iface is None or iface.endpoint is None or iface.address != walk.packet.dst:
            raise cls.drop(walk, DropReason.NO_ROUTE,
                           f"{oif} leads to no pod with {walk.packet.dst}")
        record = DeliverRecord(walk.node.name, f"pod {iface.endpoint}", oif, walk.packet)
        walk.records.append(record)
        return record


class Tunnel(Stage):
    """A tunnel device: framing on the way out, the receive handler on the way in."""

    name = "tunnel"
    models = "ipip_tunnel_xmit / vxlan_xmit / wg_xmit and ipip_rcv / vxlan_rcv / wg_packet_receive"
    reasons = frozenset({DropReason.NO_ROUTE, DropReason.UNKNOWN_TUNNEL_PEER,
                         DropReason.NO_TUNNEL_DEVICE})

    @classmethod
    def no_peer(cls, walk: Walk, why: str) -> Dropped:
        return cls.drop(walk, DropReason.NO_ROUTE, why)

    @classmethod
    def no_device(cls, walk: Walk) -> Dropped:
        """The frame reaches the host's own stack: no socket there, the inner packet is lost
        (e.g. the sender's vxlan.calico sends to a vxlanPort this node does not listen on)."""
        packet = walk.packet
        port = f" port {packet.dport}" if packet.dport is not None else ""
        return cls.drop(walk, DropReason.NO_TUNNEL_DEVICE,
                        f"no tunnel device of {walk.node.name} takes protocol {packet.protocol}"
                        f"{port}: the encapsulated packet is lost")

    @classmethod
    def wrong_vni(cls, walk: Walk, sent: int, own: int) -> Dropped:
        return cls.drop(walk, DropReason.NO_TUNNEL_DEVICE,
                        f"the VXLAN frame carries VNI {sent}; {walk.node.name}'s "
                        f"vxlan.calico has VNI {own}: the encapsulated packet is lost")

    @classmethod
    def not_ours(cls, walk: Walk, mode: str) -> Dropped:
        return cls.drop(walk, DropReason.UNKNOWN_TUNNEL_PEER,
                        f"{mode} packet carries no inner packet the simulator framed")


class HopLimit(Stage):
    """A guard of the walk itself: a packet that keeps moving between nodes is a loop."""

    name = "hop-limit"
    models = "the TTL across nodes (each forward decrements it)"
    reasons = frozenset({DropReason.TTL_EXCEEDED})


STAGES: tuple[type[Stage], ...] = (PodStack, Netfilter, Conntrack, NatBinding, NatRule, Routing,
                                   Forward, Delivery, Tunnel, HopLimit)


def declared_reasons() -> dict[str, frozenset[DropReason]]:
    """Stage name -> the reasons it may emit."""
    return {stage.name: stage.reasons for stage in STAGES}


def _port(packet: Packet, port: int) -> int | None:
    return port if packet.sport is not None else None


def conntrack_key(packet: Packet) -> PacketKey:
    """The header fields nf_conntrack reads, from the trace's packet record."""
    inner = conntrack_key(packet.inner) if packet.protocol == ICMP and packet.inner else None
    if packet.protocol == ICMP:
        return PacketKey(int(packet.src), int(packet.dst), ICMP, sport=packet.icmp_id,
                         icmp_type=packet.icmp_type, icmp_code=packet.icmp_code,
                         icmp_inner=inner)
    return PacketKey(int(packet.src), int(packet.dst), packet.protocol,
                     sport=packet.sport or 0, dport=packet.dport or 0,
                     tcp_flags=packet.tcp_flags if packet.protocol == TCP else None,
                     seq=packet.seq, ack=packet.ack_seq, window=packet.window,
                     payload_len=packet.payload_len, wscale=packet.wscale)
