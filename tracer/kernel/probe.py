"""Send one real probe packet through a :class:`KernelLab` and record what the kernel did.

The probe leaves a real socket in the source namespace (TCP ``connect()``, UDP
``sendto()``, or an ICMP echo on a raw socket); a listener waits in the destination so the
conversation is the ordinary one (SYN-ACK rather than RST). Delivery means the probe
packet *arrived* in the destination namespace, seen by an ``AF_PACKET`` socket there, so it
counts even if the reply is later lost. Matching is by content (TCP SYN to the port, the
UDP payload marker, the ICMP echo payload) rather than addresses, so NAT on the way does not
hide a delivery.

TRACE rules match the probe narrowly (addresses, protocol, ports or echo type) in raw
PREROUTING of every node, and in raw OUTPUT of the sending node for host-originated
probes; see :mod:`tracer.kernel.xtrace` for how the trace is captured.
"""

from __future__ import annotations

import errno
import itertools
import os
import random
import select
import socket
import struct
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Literal

from tracer.encap.ipv4 import internet_checksum
from tracer.errors import InputError
from tracer.kernel import nsexec
from tracer.kernel.realise import KernelLab
from tracer.kernel.xtrace import (TRACE_TAG_PREFIX, KernelEvent, TraceMonitor, TracePoint,
                                  first_packet)

Protocol = Literal["tcp", "udp", "icmp"]
ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
PACKET_OUTGOING = 4
NODE_PREFIX = "node:"
EXTERNAL = "external"
_tags = itertools.count(1)


@dataclass(frozen=True)
class Probe:
    """One packet to send. ``src`` is a pod key, ``node:<name>`` for host-originated, or
    ``external`` for the host outside the cluster on the underlay.

    ``expect_at`` names the address whose namespace should receive the packet when it is
    not ``dst``. ``arrivals`` is for a packet the kernel DNATs to one of several backends
    (a Service): each (address, port) it may arrive as; a listener and a capture wait at
    every one, and :attr:`ProbeResult.arrived_at` says which got it.
    """

    src: str
    dst: IPv4Address
    protocol: Protocol
    dport: int | None = None
    timeout: float = 1.0
    expect_at: IPv4Address | None = None
    arrivals: tuple[tuple[IPv4Address, int | None], ...] = ()


@dataclass(frozen=True)
class ProbeResult:
    probe: Probe
    delivered: bool
    events: tuple[KernelEvent, ...]                 # first probe packet, per node
    all_events: tuple[KernelEvent, ...]             # every traced packet (retransmits too)
    lines: dict[str, tuple[str, ...]] = field(default_factory=dict)   # raw monitor output
    sport: int | None = None                        # the source port the sender was given
    arrived_at: tuple[IPv4Address, int | None] | None = None    # which of ``arrivals``
    arrived_as: tuple[IPv4Address, IPv4Address, int | None] | None = None  # src, dst, dport


@dataclass(frozen=True)
class _Arrival:
    """Where the probe may arrive, and as which address and port (after any DNAT)."""

    ns: str
    address: IPv4Address
    port: int | None


@dataclass(frozen=True)
class _Endpoints:
    src_ns: str
    src_ip: IPv4Address
    src_node: str | None               # None: the external host
    host_originated: bool
    dst_ns: str
    dst_is_node: bool                  # a node's own stack: its INPUT hook decides delivery
    arrivals: tuple[_Arrival, ...] = ()

    def waits(self, probe: Probe) -> tuple[_Arrival, ...]:
        return self.arrivals or (_Arrival(self.dst_ns, probe.expect_at or probe.dst,
                                          probe.dport),)


def run_probe(lab: KernelLab, probe: Probe, *, monitor=TraceMonitor) -> ProbeResult:
    """Trace ``probe`` on every node of ``lab`` and report delivery and the kernel's events.
    ``monitor``: the trace monitor class (xtables-monitor's, or nft's: tracer.nft.ktrace)."""
    ends = _resolve(lab, probe)
    tag = f"{TRACE_TAG_PREFIX}-{os.getpid()}-{next(_tags)}"
    with ExitStack() as stack:
        waits = ends.waits(probe)
        captures = [(stack.enter_context(_capture(w.ns)), w) for w in waits]
        listener = None
        if probe.protocol != "icmp":
            listeners = [stack.enter_context(_listener(w.ns, probe.protocol, w.port))
                         for w in waits]
            listener = listeners[0]
        sender = stack.enter_context(_sender(ends, probe))
        monitors = [monitor(node.name, lab.netns_of_node(node.name), tag,
                                 _trace_points(probe, ends, sender.sport, node.name))
                    for node in _node_order(lab, ends.src_node)]
        for monitor in monitors:
            stack.callback(_stop_quietly, monitor)
            monitor.start()
        before = nsexec.snmp_counters(ends.dst_ns) if ends.dst_is_node else None
        matcher = sender.send()
        arrived, seen = _wait_delivery(captures, matcher, probe.timeout)
        delivered = arrived is not None
        if before is not None:
            # The node's own AF_PACKET socket sees the frame before its INPUT hook: what
            # counts is whether the transport layer got it (its own counters say so).
            delivered = _reached_transport(ends.dst_ns, probe, before, listener)
        # Close first: a SYN retransmission must not race the TRACE rules' removal
        # (xtables-monitor fails to print a packet whose rule was just deleted).
        sender.close()
        lines = {m.node: tuple(m.stop()) for m in monitors}
    all_events = [e for m in monitors for e in m.events()]
    return ProbeResult(probe=probe, delivered=delivered, events=tuple(first_packet(all_events)),
                       all_events=tuple(all_events), lines=lines, sport=sender.sport,
                       arrived_at=(arrived.address, arrived.port) if arrived else None,
                       arrived_as=_addresses(seen) if seen else None)


def _stop_quietly(monitor: TraceMonitor) -> None:
    try:
        monitor.stop()
    except Exception:       # already stopped, or failing while another error unwinds
        pass


def _node_order(lab: KernelLab, src_node: str | None):
    nodes = list(lab.spec.nodes)
    return sorted(nodes, key=lambda node: node.name != src_node)   # stable: source first


def _resolve(lab: KernelLab, probe: Probe) -> _Endpoints:
    spec = lab.spec
    if probe.src == EXTERNAL:
        if spec.underlay_gateway is None or lab.ns.external is None:
            raise InputError("this lab has no external host", obj=probe.src)
        entry, _ = spec.owner_of(probe.expect_at or probe.dst)
        src = (lab.ns.external, spec.underlay_gateway.ip, entry.name if entry else None, False)
    elif probe.src.startswith(NODE_PREFIX):
        name = probe.src[len(NODE_PREFIX):]
        try:
            node = spec.node(name)
        except KeyError:
            raise InputError(f"unknown source node {name!r}", obj=probe.src) from None
        src = (lab.netns_of_node(name), node.underlay.ip, name, True)
    else:
        try:
            node, pod = spec.pod(probe.src)
        except KeyError:
            raise InputError(f"unknown source pod {probe.src!r}", obj=probe.src) from None
        src = (lab.netns_of_pod(pod.key), pod.ip, node.name, False)
    if probe.protocol in ("tcp", "udp") and not probe.dport:
        raise InputError(f"a {probe.protocol} probe needs a destination port", obj=probe.src)
    target = probe.expect_at or probe.dst
    dst_ns = lab.netns_of_address(target) or lab.ns.external
    if dst_ns is None:
        raise InputError(f"no namespace in the lab receives {target} (and no external host)",
                         obj=str(target))
    node, pod = spec.owner_of(target)
    arrivals = []
    for address, port in probe.arrivals:
        owner_node, owner_pod = spec.owner_of(address)
        if owner_pod is None:
            # A node's AF_PACKET socket sees frames before INPUT decides: not a witness.
            raise InputError(f"{address} is not a pod in the lab: only pod backends can be "
                             "waited for", obj=str(address))
        arrivals.append(_Arrival(lab.ns.pods[owner_pod.key], address, port))
    return _Endpoints(*src, dst_ns=dst_ns,
                      dst_is_node=node is not None and pod is None and not arrivals,
                      arrivals=tuple(arrivals))


def _trace_points(probe: Probe, ends: _Endpoints, sport: int | None,
                  node: str) -> list[TracePoint]:
    destinations = {(probe.dst, probe.dport), (probe.expect_at or probe.dst, probe.dport)}
    destinations |= {(a.address, a.port) for a in ends.arrivals}   # after a DNAT
    points = []
    for dst, dport in sorted(destinations, key=lambda d: (d[0], d[1] or 0)):
        # No source address or port: SNAT (natOutgoing's MASQUERADE --random-fully) rewrites
        # both before the next node sees the packet. The lab carries nothing but the probe.
        match = ("-d", str(dst), "-p", probe.protocol)
        if probe.protocol == "icmp":
            match += ("--icmp-type", "echo-request")
        else:
            match += ("--dport", str(dport))
        if probe.protocol == "tcp":
            match += ("--syn",)        # only the SYN: the handshake's ACK would match too
        points.append(TracePoint("PREROUTING", match))
        if ends.host_originated and node == ends.src_node:
            points.append(TracePoint("OUTPUT", match))
    return points


# -- the receiving side -------------------------------------------------------------------


@contextmanager
def _capture(netns: str) -> Iterator[socket.socket]:
    sock = nsexec.socket_in(netns, socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.setblocking(False)
    try:
        yield sock
    finally:
        sock.close()


@contextmanager
def _listener(netns: str, protocol: str, port: int | None) -> Iterator[socket.socket]:
    """A TCP listener or UDP socket on the port, so the destination answers normally."""
    kind = socket.SOCK_STREAM if protocol == "tcp" else socket.SOCK_DGRAM
    sock = nsexec.socket_in(netns, socket.AF_INET, kind)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", port))
    if protocol == "tcp":
        sock.listen(8)
    try:
        yield sock
    finally:
        sock.close()


def _wait_delivery(captures: list[tuple[socket.socket, _Arrival]], matches,
                   timeout: float) -> tuple[_Arrival | None, bytes | None]:
    """The arrival whose capture saw the probe (``matches(ip_packet, port)``) and the IP
    packet as it arrived, or (None, None)."""
    deadline = time.monotonic() + timeout
    by_socket = dict(captures)
    while (remaining := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select(list(by_socket), [], [], remaining)
        if not ready:
            break
        for capture in ready:
            try:
                frame, address = capture.recvfrom(65535)
            except BlockingIOError:
                continue
            if address[2] == PACKET_OUTGOING or address[1] != ETH_P_IP:
                continue
            arrival = by_socket[capture]
            # veth, vxlan and lo frames all carry an Ethernet header
            if matches(frame[14:], arrival.port):
                return arrival, frame[14:]
    return None, None


def _addresses(ip: bytes) -> tuple[IPv4Address, IPv4Address, int | None]:
    """Source, destination and destination port of an IPv4 packet (port: TCP/UDP only)."""
    src, dst = IPv4Address(ip[12:16]), IPv4Address(ip[16:20])
    if ip[9] not in (6, 17):
        return src, dst, None
    header_len = (ip[0] & 0x0F) * 4
    return src, dst, struct.unpack("!H", ip[header_len + 2:header_len + 4])[0]


# The /proc/net/snmp counter a packet bumps as the transport layer receives it, once INPUT
# let it up the stack. (UDP counts InDatagrams only when the socket is read: its listener's
# queue is the witness instead.)
_TRANSPORT_COUNTERS = {"tcp": ("Tcp", "InSegs"), "icmp": ("Icmp", "InEchos")}


def _reached_transport(netns: str, probe: Probe, before: dict[tuple[str, str], int],
                       listener: socket.socket | None) -> bool:
    if probe.protocol == "udp":
        assert listener is not None
        ready, _, _ = select.select([listener], [], [], 0)
        return bool(ready)
    key = _TRANSPORT_COUNTERS[probe.protocol]
    return nsexec.snmp_counters(netns)[key] > before[key]


# -- the sending side ---------------------------------------------------------------------


class _Sender:
    """Owns the source socket; ``send()`` fires the probe and returns a delivery matcher."""

    def __init__(self, ends: _Endpoints, probe: Probe) -> None:
        self.probe = probe
        self.ends = ends
        self.sport: int | None = None
        self.sock: socket.socket | None = None
        self.echo_id = random.randrange(1, 0xFFFF)
        self.marker = f"ctk-probe-{os.getpid()}-{self.echo_id}".encode()

    def open(self) -> None:
        proto = self.probe.protocol
        if proto == "icmp":
            self.sock = nsexec.socket_in(self.ends.src_ns, socket.AF_INET, socket.SOCK_RAW,
                                         socket.IPPROTO_ICMP)
            # Bound like the TCP/UDP probes: left to itself a node would pick the tunnel
            # device's address as source for a route via vxlan.calico.
            self.sock.bind((str(self.ends.src_ip), 0))
            return
        kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
        self.sock = nsexec.socket_in(self.ends.src_ns, socket.AF_INET, kind)
        self.sock.bind((str(self.ends.src_ip), 0))
        self.sport = self.sock.getsockname()[1]

    def send(self):
        assert self.sock is not None
        dst, proto = str(self.probe.dst), self.probe.protocol
        if proto == "tcp":
            self.sock.setblocking(False)
            code = self.sock.connect_ex((dst, self.probe.dport))
            if code not in (0, errno.EINPROGRESS):
                raise OSError(code, f"connect to {dst}: {os.strerror(code)}")
            return lambda ip, port: _is_tcp_syn(ip, port)
        if proto == "udp":
            self.sock.sendto(self.marker, (dst, self.probe.dport))
            return lambda ip, port: _is_udp_payload(ip, port, self.marker)
        self.sock.sendto(_echo_request(self.echo_id, self.marker), (dst, 0))
        return lambda ip, port: _is_echo(ip, self.marker)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


@contextmanager
def _sender(ends: _Endpoints, probe: Probe) -> Iterator[_Sender]:
    sender = _Sender(ends, probe)
    sender.open()
    try:
        yield sender
    finally:
        sender.close()


def _echo_request(ident: int, payload: bytes) -> bytes:
    header = struct.pack("!BBHHH", 8, 0, 0, ident, 1)
    checksum = internet_checksum(header + payload)
    return struct.pack("!BBHHH", 8, 0, checksum, ident, 1) + payload


def _l4(ip: bytes, protocol: int) -> bytes | None:
    """The transport header and payload of an IPv4 packet of ``protocol``, or None."""
    if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != protocol:
        return None
    header_len = (ip[0] & 0x0F) * 4
    total = struct.unpack("!H", ip[2:4])[0]
    return ip[header_len:total]


def _is_tcp_syn(ip: bytes, dport: int) -> bool:
    tcp = _l4(ip, 6)
    if tcp is None or len(tcp) < 14:
        return False
    flags = tcp[13]
    return struct.unpack("!H", tcp[2:4])[0] == dport and bool(flags & 0x02) and not flags & 0x10


def _is_udp_payload(ip: bytes, dport: int, marker: bytes) -> bool:
    udp = _l4(ip, 17)
    return udp is not None and len(udp) >= 8 and \
        struct.unpack("!H", udp[2:4])[0] == dport and udp[8:] == marker


def _is_echo(ip: bytes, marker: bytes) -> bool:
    """Our echo request, by its payload: SNAT (MASQUERADE --random-fully) may remap the
    echo identifier as it does a port."""
    icmp = _l4(ip, 1)
    return icmp is not None and len(icmp) >= 8 and icmp[0] == 8 and icmp[8:] == marker
