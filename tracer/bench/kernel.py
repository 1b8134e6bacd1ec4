"""The kernel's own netfilter on the same rulesets and packets: what the engine is compared to.

Three namespaces in a line, ``sender ─ router ─ receiver``, joined by veth pairs. The router
carries the workload's interface names (``eth0``/``eth1`` for an ACL, the pods' ``cali…``
names for a Calico node), forwards (``ip_forward=1``), routes the packets' destination to the
receiver (a permanent neighbour, so nothing waits for ARP) and their source back to the
sender (felix's raw-table RPF check passes), and holds the workload's ipsets and every table
of its ruleset, loaded with ``ipset restore`` and ``iptables-restore``. The sender blasts
pre-built Ethernet frames at the router from an ``AF_PACKET`` socket through ``sendmmsg``
(1,024 frames per call through ctypes, so Python is not what is measured) for a few seconds.

The count is the kernel's own: the packet counter of the rule (or chain policy) that decided
the injected packets, as our reference interpreter names it, read with ``iptables-save -c``
before and after; rate = packets decided / wall seconds of blasting. That counter also proves
the walk: a packet counted on the FORWARD policy of the ACL went past all of its rules, and
one counted on the final DROP of ``cali-tw-…`` went through every policy. For veth, the
router's forwarding and netfilter run in the sender's softirq on the sender's CPU, so a rate
is what one core does (sender included, so the baseline is a lower bound).

Everything lives in namespaces made here and removed on exit (tracer/kernel/cleanup.py).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import random
import shutil
import socket
import statistics
import struct
import time
from dataclasses import dataclass, replace
from ipaddress import IPv4Address

import numpy as np

from tracer.bench.suite import Record, _record, compiled_rate
from tracer.bench.workloads import Workload, acl_rules, acl_workload, calico_workload
from tracer.dataplane.interpreter import PacketView, run_hook
from tracer.dataplane.ipsets import format_ipsets
from tracer.dataplane.iptables_save import format_ruleset
from tracer.dataplane.ir import (AddressMatch, Chain, PortMatch, ProtocolMatch, Reject, Rule,
                                 Ruleset, Table, Verdict)
from tracer.dataplane.state import NO_PINS
from tracer.encap.ipv4 import internet_checksum
from tracer.kernel import cleanup

GATEWAY = "192.0.2.2"              # the receiver, as the router's next hop (TEST-NET-1)
ACL_SOURCES = (100 << 24 | 64 << 16, 10)       # 100.64.0.0/10: no ACL rule's base prefix
ACL_DESTINATIONS = (198 << 24 | 18 << 16, 15)  # 198.18.0.0/15, the benchmarking range
FRAMES = 64                        # distinct frames the sender cycles through
BATCH = 1024                       # frames per sendmmsg call
SOL_PACKET, PACKET_QDISC_BYPASS = 263, 20       # <linux/socket.h>, <linux/if_packet.h>
TOOLS = ("iptables-restore", "iptables-save", "ipset")


def missing_requirements() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, iptables)"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    return f"missing {', '.join(missing)}" if missing else None


# ------------------------------------------------------------------ frames


def ipv4_frame(dst_mac: str, src_mac: str, saddr: int, daddr: int, protocol: int,
               sport: int, dport: int, tcp_flags: int, total_length: int = 60) -> bytes:
    """An Ethernet frame carrying a TCP or UDP packet of ``total_length`` bytes, checksums
    right (conntrack checks TCP's in PREROUTING and would call a bad one INVALID)."""
    header = 20 if protocol == 6 else 8
    payload = b"\0" * (total_length - 20 - header)
    if protocol == 6:
        l4 = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, tcp_flags, 64240, 0, 0)
    else:
        l4 = struct.pack("!HHHH", sport, dport, header + len(payload), 0)
    pseudo = struct.pack("!IIBBH", saddr, daddr, 0, protocol, len(l4) + len(payload))
    check = internet_checksum(pseudo + l4 + payload)
    offset = 16 if protocol == 6 else 6
    l4 = l4[:offset] + struct.pack("!H", check) + l4[offset + 2:]
    ip = struct.pack("!BBHHHBBHII", 0x45, 0, total_length, 0, 0x4000, 64, protocol, 0,
                     saddr, daddr)
    ip = ip[:10] + struct.pack("!H", internet_checksum(ip)) + ip[12:]
    return (bytes.fromhex(dst_mac.replace(":", "")) + bytes.fromhex(src_mac.replace(":", ""))
            + b"\x08\x00" + ip + l4 + payload)


# ------------------------------------------------------------------ sendmmsg through ctypes


class _Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32),
                ("iov", ctypes.POINTER(_Iovec)), ("iovlen", ctypes.c_size_t),
                ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
                ("flags", ctypes.c_int)]


class _Mmsghdr(ctypes.Structure):
    _fields_ = [("hdr", _Msghdr), ("len", ctypes.c_uint)]


class Blaster:
    """Sends ``frames`` round-robin out of ``sock`` (an AF_PACKET socket) as fast as it can."""

    def __init__(self, sock: socket.socket, frames: list[bytes]) -> None:
        self._sock = sock
        self._buffers = [ctypes.create_string_buffer(f, len(f)) for f in frames]
        self._iov = (_Iovec * BATCH)()
        self._msgs = (_Mmsghdr * BATCH)()
        for i in range(BATCH):
            buffer = self._buffers[i % len(self._buffers)]
            self._iov[i].base = ctypes.addressof(buffer)
            self._iov[i].len = len(buffer)
            self._msgs[i].hdr.iov = ctypes.pointer(self._iov[i])
            self._msgs[i].hdr.iovlen = 1
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        self._sendmmsg = libc.sendmmsg
        self._sendmmsg.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int)

    def close(self) -> None:
        self._sock.close()

    def run(self, seconds: float) -> tuple[int, float]:
        """Blast for ``seconds``; return (frames the socket took, wall seconds)."""
        fd, msgs, send = self._sock.fileno(), ctypes.addressof(self._msgs), self._sendmmsg
        sent = 0
        start = time.perf_counter()
        deadline = start + seconds
        while time.perf_counter() < deadline:
            done = send(fd, msgs, BATCH, 0)
            if done > 0:
                sent += done
        return sent, time.perf_counter() - start


# ------------------------------------------------------------------ the namespaces


class Line(cleanup.OwnedNamespaces):
    """``sender ─ router ─ receiver`` namespaces; the router's ports are ``iif`` and ``oif``.
    A context manager: every namespace is removed on exit, by a watchdog if we die."""

    def __init__(self, iif: str, oif: str) -> None:
        super().__init__()
        self.iif, self.oif = iif, oif

    def _build(self) -> None:
        self.sender, self.router, self.receiver = (self.new_namespace() for _ in range(3))
        self._wire()

    def _wire(self) -> None:
        from pyroute2 import IPRoute

        from tracer.kernel import nsexec
        for end, port in ((self.sender, self.iif), (self.receiver, self.oif)):
            with IPRoute(netns=end, flags=0) as ipr:
                ipr.link("add", ifname="eth0", kind="veth",
                         peer={"ifname": port, "net_ns_fd": self.router})
                eth0 = ipr.link_lookup(ifname="eth0")[0]
                ipr.link("set", index=eth0, state="up")
        with IPRoute(netns=self.router, flags=0) as ipr:
            for port in (self.iif, self.oif):
                ipr.link("set", index=ipr.link_lookup(ifname=port)[0], state="up")
        self.sender_mac = self._mac(self.sender, "eth0")
        self.router_mac = self._mac(self.router, self.iif)
        self.receiver_mac = self._mac(self.receiver, "eth0")
        # after the links exist: ip_forward sets forwarding on every interface
        nsexec.write_sysctls(self.router, {"net/ipv4/ip_forward": 1})
        with IPRoute(netns=self.router, flags=0) as ipr:
            oif = ipr.link_lookup(ifname=self.oif)[0]
            ipr.neigh("add", dst=GATEWAY, lladdr=self.receiver_mac, ifindex=oif,
                      state=0x80)                              # NUD_PERMANENT

    def route(self, source: str, destination: str) -> None:
        """Send ``destination`` to the receiver; ``source`` is reachable back via ``iif``."""
        from pyroute2 import IPRoute
        with IPRoute(netns=self.router, flags=0) as ipr:
            iif = ipr.link_lookup(ifname=self.iif)[0]
            oif = ipr.link_lookup(ifname=self.oif)[0]
            ipr.route("replace", dst=source, oif=iif, scope=253)
            ipr.route("replace", dst=destination, gateway=GATEWAY, oif=oif,
                      flags=["onlink"])

    @staticmethod
    def _mac(ns: str, ifname: str) -> str:
        from pyroute2 import IPRoute
        with IPRoute(netns=ns, flags=0) as ipr:
            return ipr.get_links(ipr.link_lookup(ifname=ifname)[0])[0].get_attr("IFLA_ADDRESS")

    def load(self, ruleset: Ruleset) -> None:
        """Replace the router's ipsets and rules with ``ruleset``'s (counters zero)."""
        from tracer.kernel import nsexec
        if ruleset.ipsets:
            nsexec.run(self.router, ["ipset", "restore", "-exist"],
                       input_text=format_ipsets(ruleset.ipsets))
        nsexec.run(self.router, ["iptables-restore", "-w"],
                       input_text=format_ruleset(ruleset), timeout=300)

    def counters(self) -> dict[tuple[str, int | None], int]:
        """filter-table packet counters: (chain, rule number) and (chain, None) for policy."""
        from tracer.kernel import nsexec
        text = nsexec.run(self.router, ["iptables-save", "-c", "-t", "filter"], timeout=120)
        counts: dict[tuple[str, int | None], int] = {}
        position: dict[str, int] = {}
        for line in text.splitlines():
            if line.startswith(":"):
                name, policy, packets = line[1:].split()[:3]
                if policy != "-":
                    counts[(name, None)] = int(packets.strip("[]").split(":")[0])
            elif line.startswith("["):
                packets, rest = line[1:].split("]", 1)
                chain = rest.split()[1]
                position[chain] = position.get(chain, 0) + 1
                counts[(chain, position[chain])] = int(packets.split(":")[0])
        return counts

    def forwarded(self) -> int:
        """Packets the receiver's ``eth0`` took in (it forwards nothing on)."""
        from tracer.kernel import nsexec
        text = nsexec.call_in_netns(self.receiver,
                                    lambda: open("/proc/thread-self/net/dev").read())
        for line in text.splitlines():
            name, _, fields = line.partition(":")
            if name.strip() == "eth0":
                return int(fields.split()[1])
        raise RuntimeError("receiver has no eth0")

    def blaster(self, frames: list[bytes]) -> Blaster:
        from tracer.kernel import nsexec
        sock = nsexec.socket_in(self.sender, socket.AF_PACKET, socket.SOCK_RAW, 0)
        sock.bind(("eth0", 0))
        sock.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, 1)    # no qdisc: veth has none
        return Blaster(sock, frames)


# ------------------------------------------------------------------ one measurement


@dataclass(frozen=True)
class KernelRun:
    """Medians over runs of one ruleset in the router."""

    rate: float                 # packets decided by the expected rule per wall second
    sent: float                 # frames the sender's socket took per wall second
    decided_by: str             # "chain rule N" or "chain policy"
    decided: int                # total packets on that counter over all runs
    others: int                 # packets decided elsewhere (other ACCEPT/DROP, a policy)
    forwarded: int              # packets the receiver took in over all runs


def deciding_rule(workload: Workload, packets: np.ndarray) -> tuple[str, int | None]:
    """Where the reference interpreter says ``packets`` end in filter FORWARD (all alike)."""
    env = workload.node.environment(NO_PINS)
    places = set()
    for row in packets:
        view = PacketView(int(row["saddr"]), int(row["daddr"]), int(row["protocol"]),
                          int(row["sport"]), int(row["dport"]), None, None,
                          int(row["tcp_flags"]) if row["tcp_flags"] >= 0 else None,
                          workload.iif, workload.oif, 0, "NEW")
        event = run_hook(workload.node.ruleset, Table.FILTER, "FORWARD", view, env).deciding
        assert event is not None
        places.add((event.chain, event.rule_number if event.kind == "rule" else None))
    if len(places) != 1:
        raise RuntimeError(f"the injected packets end in different places: {sorted(places)}")
    return places.pop()


def measure(line: Line, workload: Workload, packets: np.ndarray, seconds: float,
            repeat: int) -> KernelRun:
    line.load(workload.node.ruleset)
    place = deciding_rule(workload, packets)
    frames = [ipv4_frame(line.router_mac, line.sender_mac, int(r["saddr"]), int(r["daddr"]),
                         int(r["protocol"]), int(r["sport"]), int(r["dport"]),
                         int(r["tcp_flags"]) if r["tcp_flags"] >= 0 else 0)
              for r in packets]
    blaster = line.blaster(frames)
    try:
        blaster.run(min(0.2, seconds))                         # caches, neighbour, conntrack
        rates, sends = [], []
        before, received = line.counters(), line.forwarded()
        first = dict(before)
        for _ in range(repeat):
            sent, wall = blaster.run(seconds)
            after = line.counters()
            rates.append((after.get(place, 0) - before.get(place, 0)) / wall)
            sends.append(sent / wall)
            before = after
    finally:
        blaster.close()              # an open socket would keep the namespace alive
    others = sum(count - first.get(key, 0) for key, count in before.items()
                 if key != place and _decides(workload, key))
    chain, number = place
    return KernelRun(statistics.median(rates), statistics.median(sends),
                     f"{chain} {'policy' if number is None else f'rule {number}'}",
                     before.get(place, 0) - first.get(place, 0), others,
                     line.forwarded() - received)


def _decides(workload: Workload, key: tuple[str, int | None]) -> bool:
    """Whether a packet counted on ``key`` ended its walk there (ACCEPT, DROP, REJECT or a
    chain policy); MARK, jumps and RETURN count packets that walk on."""
    chain, number = key
    chains = workload.node.ruleset.tables[Table.FILTER]
    if chain not in chains:
        return False                            # INPUT/OUTPUT: not on the forward path
    if number is None:
        return chain == "FORWARD"
    rules = chains[chain].rules
    target = rules[number - 1].target
    return isinstance(target, Reject) or (isinstance(target, Verdict)
                                          and target.name != "RETURN")


# ------------------------------------------------------------------ the workloads


def _in(prefix: tuple[int, int], rng: random.Random) -> int:
    base, length = prefix
    return base | rng.getrandbits(32 - length)


def walking_acl(rules: int, count: int = FRAMES, seed: int = 5) -> tuple[Workload, np.ndarray]:
    """A ClassBench-style ACL of ``rules`` rules none of which matches ``count`` probe
    packets, and those probes: each walks every rule to the chain policy (DROP).

    The random ACL of :func:`acl_workload` holds rules on protocol and a port alone, which
    every packet of that protocol meets early; here rules are drawn the same way and the
    ones that would match a probe are left out (the reference interpreter then confirms
    that every probe reaches the policy)."""
    rng = random.Random(seed)
    probes = np.zeros(count, dtype=acl_workload(1, packets=1).packets.dtype)
    for row in probes:
        row["protocol"] = rng.choice((6, 17))
        row["saddr"], row["daddr"] = _in(ACL_SOURCES, rng), _in(ACL_DESTINATIONS, rng)
        row["sport"], row["dport"] = rng.randrange(1024, 65535), rng.randrange(1, 65535)
    probes["tcp_flags"] = np.where(probes["protocol"] == 6, 0x02, -1)
    probes["ttl"], probes["tot_len"] = 64, 60
    kept: list[Rule] = []
    draw = seed
    while len(kept) < rules:
        kept += [r for r in acl_rules(rules, draw) if not any(_matches(r, p) for p in probes)]
        draw += 1000
    workload = _acl_node(kept[:rules], probes)
    if deciding_rule(workload, probes) != ("FORWARD", None):
        raise RuntimeError("the ACL probes do not all reach the FORWARD policy")
    return workload, probes


def _matches(rule: Rule, probe: np.void) -> bool:
    for m in rule.matches:
        if isinstance(m, ProtocolMatch):
            hit = m.protocol == probe["protocol"]
        elif isinstance(m, AddressMatch):
            hit = m.cidr.contains(int(probe["saddr" if m.direction == "src" else "daddr"]))
        elif isinstance(m, PortMatch):
            hit = m.contains(int(probe["sport" if m.direction == "src" else "dport"]))
        else:
            raise TypeError(f"unexpected ACL match {m!r}")
        if hit == m.negated:
            return False
    return True


def _acl_node(rules: list[Rule], packets: np.ndarray) -> Workload:
    """:func:`acl_workload`'s node (FORWARD policy DROP, eth0 to eth1) holding ``rules``."""
    base = acl_workload(1, packets=1)
    tables = dict(base.node.ruleset.tables)
    tables[Table.FILTER] = {**tables[Table.FILTER],
                            "FORWARD": Chain("FORWARD", tuple(rules), "DROP")}
    node = replace(base.node, ruleset=replace(base.node.ruleset, tables=tables))
    return replace(base, node=node, packets=packets, rules=len(rules))


def empty_forward(workload: Workload, policy: str) -> Workload:
    """The same node with nothing in filter but an empty FORWARD with ``policy``."""
    ruleset = Ruleset({Table.FILTER: {"FORWARD": Chain("FORWARD", (), policy)}})
    return replace(workload, node=replace(workload.node, ruleset=ruleset), rules=0)


def _prefix(prefix: tuple[int, int]) -> str:
    return f"{IPv4Address(prefix[0])}/{prefix[1]}"


def _ours(workload: Workload, packets: np.ndarray, repeat: int,
          classify: bool = True) -> float:
    tiled = np.resize(packets, 16384)
    return compiled_rate(replace(workload, packets=tiled), repeat, classify)


def kernel_records(plan, progress) -> list[Record]:
    """Kernel packets/s without and with the ruleset, and ours on the same packets."""
    seconds = getattr(plan, "kernel_seconds", 0.0)
    if not seconds:
        return []
    why = missing_requirements()
    if why:
        return [Record(f"against the kernel: not measured ({why})", "kernel", 0.0,
                       "not measured", None, None, None, None)]
    repeat = 3
    rules = plan.kernel_acl_rules
    progress(f"kernel, flat ACL {rules:,} rules")
    acl, packets = walking_acl(rules)
    with Line(acl.iif, acl.oif) as line:
        line.route(_prefix(ACL_SOURCES), _prefix(ACL_DESTINATIONS))
        accept = measure(line, empty_forward(acl, "ACCEPT"), packets, seconds, repeat)
        drop = measure(line, empty_forward(acl, "DROP"), packets, seconds, repeat)
        walked = measure(line, acl, packets, seconds, repeat)
    progress(f"kernel, Calico {plan.kernel_policies:,} policies")
    calico = calico_workload(plan.kernel_policies, packets=FRAMES)
    with Line(calico.iif, calico.oif) as line:
        line.route(f"{IPv4Address(int(calico.packets[0]['saddr']))}/32",
                   f"{IPv4Address(int(calico.packets[0]['daddr']))}/32")
        calico_base = measure(line, empty_forward(calico, "DROP"), calico.packets, seconds,
                              repeat)
        calico_run = measure(line, calico, calico.packets, seconds, repeat)
    _check(accept, drop, walked, calico_run)
    progress("kernel comparison: ours on the same packets")
    ours_acl = _ours(acl, packets, plan.repeat)
    ours_linear = _ours(acl, packets, plan.repeat, classify=False)
    ours_calico = _ours(calico, calico.packets, plan.repeat)
    per_rule = (1 / walked.rate - 1 / drop.rate) / rules * 1e9
    acl_name = f"vs kernel: ACL {rules} rules, packet walks every rule ({walked.decided_by})"
    calico_name = (f"vs kernel: Calico {plan.kernel_policies} policies, denied probe "
                   f"({calico_run.decided_by})")
    return [
        _record("kernel: empty FORWARD, policy ACCEPT (forwarded to the receiver)", "kernel",
                accept.rate, "pkt/s", "sender (frames sent)", accept.sent, 0),
        _record("kernel: empty FORWARD, policy DROP", "kernel", drop.rate, "pkt/s",
                "sender (frames sent)", drop.sent, 0),
        _record(acl_name, "kernel", walked.rate, "pkt/s", "kernel, empty FORWARD (DROP)",
                drop.rate, rules),
        _record(acl_name, "compiled", ours_acl, "pkt/s", "kernel", walked.rate, rules),
        _record(acl_name, "compiled-linear", ours_linear, "pkt/s", "kernel", walked.rate,
                rules),
        _record("kernel: cost per rule walked (ACL)", "kernel", per_rule, "ns/rule", None,
                None, rules),
        _record(calico_name, "kernel", calico_run.rate, "pkt/s",
                "kernel, empty FORWARD (DROP)", calico_base.rate, calico.rules),
        _record(calico_name, "compiled", ours_calico, "pkt/s", "kernel", calico_run.rate,
                calico.rules),
    ]


def _check(accept: KernelRun, drop: KernelRun, walked: KernelRun, calico: KernelRun) -> None:
    """The counters must show what the rates claim: packets decided where the reference
    says, nothing decided earlier, and the ACCEPT baseline really forwarded."""
    for run in (accept, drop, walked, calico):
        if run.decided <= 0 or run.rate <= 0:
            raise RuntimeError(f"kernel counted no packets on {run.decided_by}")
        if run.others:
            raise RuntimeError(f"{run.others} packets stopped before {run.decided_by}")
    if accept.forwarded < accept.decided * 0.99:
        raise RuntimeError(f"only {accept.forwarded} of {accept.decided} accepted packets "
                           "reached the receiver")
