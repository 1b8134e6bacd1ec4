"""Where a captured packet enters the dataplane.

A capture shows a packet at one point of its path; replay sends it from there. Without
``--at`` the packet's source address decides, as ``calico-trace packet`` does for ``--from``
(:func:`tracer.trace.tracing.locate`): a pod's address enters at that pod's veth, a node's
address is sent by the node itself, anything else arrives from outside on the underlay of the
node that owns the destination. A tunnelled row (VXLAN/IPIP/WireGuard seen on an underlay) is
its inner packet, sent by its inner source: its whole path, source node included, is replayed,
so both nodes' connection trackers see it.

``--at NODE/IFACE`` pins packets arriving on that interface: they enter there, tunnelled ones
as the outer packet the interface received (decapsulated by the node, as the kernel does).
Packets the node itself or one of its pods sent (the capture saw them leave) still enter at
their source. ``--at NAMESPACE/POD`` is a capture on the pod's eth0: what the pod sent enters
at its veth, what it received entered where its sender is.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address

import numpy as np

from tracer.capture.columns import Tunnel
from tracer.dataplane.interfaces import IfaceKind
from tracer.dataplane.packet import Packet
from tracer.dataplane.pipeline import Probe
from tracer.errors import InputError, quote
from tracer.model.places import Place, place_of
from tracer.protocols import IPIP, UDP
from tracer.trace.assemble import Dataplane
from tracer.trace.tracing import probe_for


class NotEntered(Exception):
    """The packet has no place to enter: both ends are outside the cluster."""


@dataclass(frozen=True)
class At:
    """Where the capture was taken (``--at``): a pod, or a node's interface."""

    kind: str                          # "pod" | "iface"
    node: str
    iface: str
    pod: str | None = None             # "ns/pod" for kind "pod"
    underlay: bool = False             # the node's underlay device (tunnels arrive there)

    @property
    def label(self) -> str:
        return self.pod if self.kind == "pod" else f"{self.node}/{self.iface}"


def parse_at(dataplane: Dataplane, text: str | None) -> At | None:
    """``NAMESPACE/POD`` or ``NODE/IFACE`` (a pod name wins when both would fit)."""
    if text is None:
        return None
    cluster = dataplane.cluster
    ep = cluster.endpoints.get(text)
    if ep is not None:
        return At("pod", ep.pod.node, ep.interface, pod=ep.key)
    node, _, iface = text.partition("/")
    if node in cluster.nodes and iface:
        devices = dataplane.nodes[node].interfaces
        device = devices.get(iface)
        if device is None:
            known = ", ".join(i.name for i in devices.interfaces)
            raise InputError(f"node {quote(node)} has no interface {quote(iface)} "
                             f"(it has {known})", obj="--at")
        return At("iface", node, iface, underlay=device.kind is IfaceKind.UNDERLAY)
    raise InputError(f"{quote(text)} is neither NAMESPACE/POD of a pod nor NODE/IFACE of a "
                     "node", obj="--at")


class Entries:
    """Decides each row's probe; built once per replay."""

    def __init__(self, dataplane: Dataplane, at: At | None):
        self.dataplane = dataplane
        self.cluster = dataplane.cluster
        self.at = at
        local: set[IPv4Address] = set()
        if at is not None and at.kind == "iface":
            local.add(self.cluster.nodes[at.node].address.ip)
            local.update(ep.pod.ip for ep in self.cluster.endpoints.values()
                         if ep.pod.node == at.node)
        self._local = frozenset(local)
        self._places: dict[IPv4Address, Place] = {}
        # Without --at the entry depends on the two addresses only: (src, dst) -> where.
        self._entries: dict[tuple, tuple | str] = {}
        self.foreign = 0                   # --at NS/POD: packets neither from nor to the pod

    def place(self, address: IPv4Address) -> Place:
        """Who owns ``address`` (cached: the cluster's lookup by address is a scan)."""
        place = self._places.get(address)
        if place is None:
            place = self._places[address] = place_of(self.cluster, address)
        return place

    def probe(self, packet: Packet, meta: np.void) -> Probe:
        at = self.at
        if at is None:
            where = self._entries.get((packet.src, packet.dst))
            if where is None:
                try:
                    p = probe_for(self.cluster, packet, self.place(packet.src),
                                  self.place(packet.dst))
                    where = (p.node, p.iif, p.source, p.destination, p.origin)
                except InputError:
                    where = (f"both ends are outside the cluster ({packet.src} -> "
                             f"{packet.dst})")
                self._entries[(packet.src, packet.dst)] = where
            if isinstance(where, str):
                raise NotEntered(where)
            return Probe(packet, *where)
        if at is not None and at.kind == "pod":
            pod_ip = self.cluster.endpoints[at.pod].pod.ip
            if pod_ip not in (packet.src, packet.dst):
                self.foreign += 1          # cannot have crossed the pod's eth0: said at the end
        if at is not None and at.kind == "iface":
            outer = _outer(packet, meta)
            if outer is not None and at.underlay and outer.src not in self._local:
                return self._arriving(outer, packet)
            if packet.src not in self._local and outer is None:
                return self._arriving(packet, packet)
        try:
            return probe_for(self.cluster, packet, self.place(packet.src),
                             self.place(packet.dst))
        except InputError:
            raise NotEntered(f"both ends are outside the cluster ({packet.src} -> "
                             f"{packet.dst})") from None

    def _arriving(self, packet: Packet, named: Packet) -> Probe:
        """``packet`` arrives on the --at interface; the ends are named after ``named`` (the
        inner packet of a tunnel: the pods, not the nodes)."""
        src, dst = self.place(named.src).label, self.place(named.dst).label
        return Probe(packet, self.at.node, self.at.iface, src, dst, "external")


def _outer(inner: Packet, meta: np.void) -> Packet | None:
    """The underlay packet a tunnelled row arrived in (VXLAN/IPIP), carrying ``inner``."""
    tunnel = int(meta["tunnel"])
    if tunnel not in (Tunnel.VXLAN, Tunnel.IPIP):
        return None
    src, dst = IPv4Address(int(meta["outer_saddr"])), IPv4Address(int(meta["outer_daddr"]))
    length, ttl = int(meta["outer_tot_len"]), int(meta["outer_ttl"]) or 64
    if tunnel == Tunnel.IPIP:
        return Packet(src, dst, IPIP, ttl=ttl, length=length, inner=inner)
    return Packet(src, dst, UDP, sport=int(meta["outer_sport"]),
                  dport=int(meta["outer_dport"]), ttl=ttl, length=length, inner=inner)
