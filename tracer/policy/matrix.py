"""Pod-to-pod reachability matrix for one protocol and port.

``compute_matrix`` is set-based: pods are grouped into equivalence classes
(:mod:`tracer.policy.matrix_classes`), and each class's endpoint chain is walked once per
direction with the set of peer classes still undecided held as a bitset (a Python int). A rule
then removes all the peers it matches in one operation instead of one pair at a time.
``compute_matrix_naive`` calls :func:`evaluate_connection` for every ordered pod pair; the two
must agree exactly (tests/test_matrix.py checks it on random clusters).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from tracer.errors import InputError
from tracer.model.cluster import Cluster, EntityRule, Rule, WorkloadEndpoint
from tracer.policy.evaluate import (
    ICMP,
    PORT_PROTOCOLS,
    Flow,
    PolicyIndex,
    named_port_protocol,
    encap_drop,
    evaluate_connection,
    index_for,
    normalise_action,
    protocol_name,
    protocol_number,
    rule_matches_packet_fields,
)
from tracer.policy.matrix_classes import PodClasses, classify
from tracer.selector.labelindex import LabelIndex
from tracer.selector.selector import parse_selector

# The source port of every probe connection: an arbitrary ephemeral port (Linux's default
# ip_local_port_range is 32768-60999). Only rules with source ports can see it.
PROBE_SOURCE_PORT = 40000
# ICMP probes are echo requests.
PROBE_ICMP_TYPE, PROBE_ICMP_CODE = 8, 0


@dataclass(frozen=True)
class Probe:
    """The connection the matrix asks about: protocol number and destination port."""

    protocol: int
    port: int | None

    @classmethod
    def make(cls, protocol: str | int, port: int | None) -> Probe:
        number = protocol_number(protocol)
        if number in PORT_PROTOCOLS:
            if port is None or not 0 < port < 65536:
                raise InputError(f"{protocol_name(number)} needs a port between 1 and 65535, "
                                 f"not {port}")
            return cls(number, port)
        return cls(number, None)

    def flow(self, src: WorkloadEndpoint, dst: WorkloadEndpoint) -> Flow:
        return self.flow_between(src.pod.ip, dst.pod.ip)

    def flow_between(self, src_ip, dst_ip) -> Flow:
        if self.protocol in PORT_PROTOCOLS:
            return Flow(src_ip, dst_ip, self.protocol, PROBE_SOURCE_PORT, self.port)
        if self.protocol == ICMP:
            return Flow(src_ip, dst_ip, ICMP, icmp_type=PROBE_ICMP_TYPE, icmp_code=PROBE_ICMP_CODE)
        return Flow(src_ip, dst_ip, self.protocol)


@dataclass(frozen=True)
class ReachabilityMatrix:
    """``allowed[i, j]``: may ``pods[i]`` open the probe connection to ``destinations[j]``?

    Square (every pod to every pod, ``columns`` None) unless :meth:`select` kept part of the
    rows or columns."""

    pods: tuple[str, ...]
    probe: Probe
    allowed: np.ndarray = field(compare=False)
    classes: int
    columns: tuple[str, ...] | None = None

    @property
    def destinations(self) -> tuple[str, ...]:
        return self.pods if self.columns is None else self.columns

    @property
    def square(self) -> bool:
        return self.columns is None

    def is_allowed(self, src: str, dst: str) -> bool:
        row = self.pods.index(src)
        return bool(self.allowed[row, self.destinations.index(dst)])

    def select(self, sources=None, destinations=None) -> ReachabilityMatrix:
        """The rows whose pod ``sources(key)`` accepts and the columns ``destinations``
        accepts (None: all)."""
        if sources is None and destinations is None:
            return self
        rows = [i for i, key in enumerate(self.pods) if sources is None or sources(key)]
        cols = [j for j, key in enumerate(self.destinations)
                if destinations is None or destinations(key)]
        return ReachabilityMatrix(tuple(self.pods[i] for i in rows), self.probe,
                                  self.allowed[np.ix_(rows, cols)], self.classes,
                                  tuple(self.destinations[j] for j in cols))

    def entries(self) -> Iterator[dict]:
        """One record per ordered pair, in pod order: from, to, protocol, port, allowed."""
        proto = protocol_name(self.probe.protocol)
        for i, src in enumerate(self.pods):
            row = self.allowed[i]
            for j, dst in enumerate(self.destinations):
                yield {"from": src, "to": dst, "protocol": proto, "port": self.probe.port,
                       "allowed": bool(row[j])}


def matrix_pods(cluster: Cluster) -> tuple[WorkloadEndpoint, ...]:
    """The workloads shown in the matrix, sorted by "ns/pod"."""
    index = index_for(cluster)
    return tuple(index.workloads[key] for key in sorted(index.workloads))


def compute_matrix_naive(cluster: Cluster, probe: Probe) -> ReachabilityMatrix:
    """Reference: one evaluate_connection per ordered pair."""
    pods = matrix_pods(cluster)
    allowed = np.zeros((len(pods), len(pods)), dtype=bool)
    for i, src in enumerate(pods):
        for j, dst in enumerate(pods):
            allowed[i, j] = evaluate_connection(cluster, probe.flow(src, dst)).allowed
    return ReachabilityMatrix(tuple(p.key for p in pods), probe, allowed, len(pods))


def compute_matrix(cluster: Cluster, probe: Probe) -> ReachabilityMatrix:
    """Set-based matrix: class pairs evaluated once, with bitsets of peer classes."""
    index = index_for(cluster)
    pods = matrix_pods(cluster)
    classes = classify(index, pods)
    walker = _ClassWalker(index, classes, probe)
    egress = walker.allowed_table("egress")      # [src class, dst class]
    ingress = walker.allowed_table("ingress")    # [dst class, src class]
    cls = np.asarray(classes.class_of, dtype=np.intp)
    allowed = egress[np.ix_(cls, cls)] & ingress[np.ix_(cls, cls)].T
    # Same address (a pod to itself): the packet never leaves the pod's namespace.
    ips = np.array([int(p.pod.ip) for p in pods], dtype=np.int64)
    allowed |= ips[:, None] == ips[None, :]
    return ReachabilityMatrix(tuple(p.key for p in pods), probe, allowed, classes.count)


class _ClassWalker:
    """Walks each class's endpoint chain once per direction over bitsets of peer classes."""

    def __init__(self, index: PolicyIndex, classes: PodClasses, probe: Probe):
        self.index = index
        self.classes = classes
        reps = classes.representatives
        self.template = probe.flow(reps[0], reps[0]) if reps else None
        self.universe = (1 << classes.count) - 1
        self._rep_ips = tuple(rep.pod.ip for rep in reps)
        self._side_bits: dict[tuple[EntityRule, str, int | None], int] = {}
        self._rep_labels: LabelIndex | None = None

    def allowed_table(self, direction: str) -> np.ndarray:
        count = self.classes.count
        table = np.zeros((count, count), dtype=bool)
        nbytes = max(1, (count + 7) // 8)
        for subject in range(count):
            bits = self.allowed_peers(subject, direction)
            row = np.unpackbits(np.frombuffer(bits.to_bytes(nbytes, "little"), dtype=np.uint8),
                                bitorder="little")
            table[subject] = row[:count].astype(bool)
        return table

    def allowed_peers(self, subject: int, direction: str) -> int:
        """Bitset of peer classes the subject class's chain allows in ``direction``."""
        rep = self.classes.representatives[subject]
        if encap_drop(self.index.cluster, direction, self.template, rep.pod.node):
            return 0
        pending, allowed = self.universe, 0
        for tier in self.index.applicable(rep.key, direction):
            passed = 0
            for policy in tier.policies:
                if policy.staged or not pending:
                    continue
                for rule in policy.rules(direction):
                    action = normalise_action(rule.action)
                    if action == "Log":
                        continue
                    hit = pending & self._rule_bits(rule, subject, direction)
                    if hit:
                        pending &= ~hit
                        if action == "Allow":
                            allowed |= hit
                        elif action == "Pass":
                            passed |= hit
            pending = (0 if tier.drops_at_end else pending) | passed
        return allowed | self._profiles_allow(rep, subject, direction, pending)

    def _profiles_allow(self, rep: WorkloadEndpoint, subject: int, direction: str,
                        pending: int) -> int:
        allowed = 0
        for name in rep.profiles:
            profile = self.index.cluster.profiles.get(name)
            if profile is None or not pending:
                break      # a missing profile drops everything still pending
            unmatched = pending
            for rule in profile.rules(direction):
                action = normalise_action(rule.action)
                if action == "Log":
                    continue
                hit = unmatched & self._rule_bits(rule, subject, direction)
                if hit:
                    unmatched &= ~hit
                    if action == "Allow":
                        allowed |= hit
                    if action != "Pass":      # Pass only leaves this profile
                        pending &= ~hit
        return allowed

    def _rule_bits(self, rule: Rule, subject: int, direction: str) -> int:
        """Peer classes the rule matches when the subject class owns the chain."""
        if not rule_matches_packet_fields(rule, self.template):
            return 0
        named_proto = named_port_protocol(rule.protocol)
        src_bits = self._entity_bits(rule.source, "src", named_proto)
        dst_bits = self._entity_bits(rule.destination, "dst", named_proto)
        own, peers = (dst_bits, src_bits) if direction == "ingress" else (src_bits, dst_bits)
        return peers if own >> subject & 1 else 0

    def _entity_bits(self, entity: EntityRule, side: str, named_proto: int | None) -> int:
        key = (entity, side, named_proto)
        bits = self._side_bits.get(key)
        if bits is None:
            bits = self._compute_entity_bits(entity, side, named_proto)
            self._side_bits[key] = bits
        return bits

    def _compute_entity_bits(self, entity: EntityRule, side: str, named_proto: int | None) -> int:
        plan = self.index.entity_plan(entity)
        if plan.is_empty:
            return self.universe
        flow = self.template
        port = flow.src_port if side == "src" else flow.dst_port
        matches = self.index.plan_matches
        bits = 0
        for position in self._candidates(plan):
            if matches(plan, self._rep_ips[position], port, flow.protocol, named_proto):
                bits |= 1 << position
        return bits

    def _candidates(self, plan) -> Iterable[int]:
        """Representatives that can match the plan: with a positive selector, only those with
        a label set it matches (found through a label index, as felix's labelindex does);
        :meth:`PolicyIndex.plan_matches` still decides each one."""
        if plan.positive is None:
            return range(len(self._rep_ips))
        if self._rep_labels is None:
            self._rep_labels = LabelIndex(
                ((position, n), labels) for position, ip in enumerate(self._rep_ips)
                for n, labels in enumerate(self.index.label_sets(ip)))
        return sorted({position for position, _ in
                       self._rep_labels.matching(parse_selector(plan.positive))})
