"""The engine benchmark suite: each measurement side by side with what it is compared to.

Rates are packets per CPU second of this process (the machine is shared; wall time would
measure the neighbours), medians of ``repeat`` runs. A record says what was measured
(``name``, ``engine``, ``value`` in ``unit``), what it is compared with (``reference``,
``reference_value``), their ``ratio`` and the ruleset size (``rules``).
"""

from __future__ import annotations

import gc
import os
import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from tracer.bench.workloads import Workload, acl_workload, calico_workload
from tracer.conntrack.arrays import ACT_CONFIRM, PKT_DTYPE, ArrayConntrackTable
from tracer.conntrack.reference import ConntrackTable
from tracer.conntrack.tuples import ACK, PSH, SYN, PacketKey
from tracer.dataplane.interpreter import PacketView, run_hook
from tracer.dataplane.ipsets import format_ipsets
from tracer.dataplane.iptables_save import format_ruleset
from tracer.dataplane.ir import Table
from tracer.dataplane.state import NO_PINS
from tracer.engine import compile_node
from tracer.engine.fastpath import known_flows


@dataclass(frozen=True)
class Record:
    name: str
    engine: str
    value: float
    unit: str
    reference: str | None
    reference_value: float | None
    ratio: float | None
    rules: int | None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Plan:
    calico_policies: tuple[int, ...]
    acl_rules: tuple[int, ...]
    growth_rules: tuple[int, ...]
    conntrack_flows: int
    compile_rules: int
    repeat: int
    # against the kernel (tracer/bench/kernel.py): seconds of traffic per run, 0 to skip
    kernel_seconds: float = 0.0
    kernel_acl_rules: int = 5000
    kernel_policies: int = 1000

    @classmethod
    def quick(cls) -> "Plan":
        return cls((100, 1000), (1000, 5000), (1, 10, 100, 1000), 20_000, 1000, 3,
                   kernel_seconds=0.5, kernel_acl_rules=1000, kernel_policies=100)

    @classmethod
    def full(cls) -> "Plan":
        return cls((100, 1000, 10_000), (1000, 5000, 10_000), (1, 10, 100, 1000, 10_000),
                   200_000, 10_000, 5, kernel_seconds=3.0)


def _median_cpu(fn: Callable[[], None], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        gc.collect()
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return statistics.median(times)


def _record(name, engine, value, unit, reference, reference_value, rules) -> Record:
    ratio = value / reference_value if reference_value else None
    if unit in ("s", "ms", "B/entry") and value and reference_value:
        ratio = reference_value / value           # smaller is better: how many times less
    return Record(name, engine, value, unit, reference, reference_value, ratio, rules)


# ------------------------------------------------------------------ new-flow verdicts


def _prepared(workload: Workload, classify: bool = True):
    compiled = compile_node(workload.node, classify=classify)
    batch = workload.packets.copy()
    batch["iif"] = compiled.iface_id(workload.iif)
    oif = compiled.iface_id(workload.oif)
    compiled.run_table(Table.FILTER, workload.hook, batch[:2], oif=oif)   # numba ready
    return compiled, batch, oif


def compiled_rate(workload: Workload, repeat: int, classify: bool = True) -> float:
    compiled, batch, oif = _prepared(workload, classify)
    seconds = _median_cpu(lambda: compiled.run_table(Table.FILTER, workload.hook, batch,
                                                     oif=oif), repeat)
    return len(batch) / seconds


def reference_rate(workload: Workload, packets: int) -> float:
    env = workload.node.environment(NO_PINS)
    views = [PacketView(int(r["saddr"]), int(r["daddr"]), int(r["protocol"]),
                        int(r["sport"]) if r["sport"] >= 0 else None,
                        int(r["dport"]) if r["dport"] >= 0 else None, None, None,
                        int(r["tcp_flags"]) if r["tcp_flags"] >= 0 else None,
                        workload.iif, workload.oif, 0, "NEW")
             for r in workload.packets[:packets]]
    start = time.process_time()
    for view in views:
        run_hook(workload.node.ruleset, Table.FILTER, workload.hook, view, env)
    return len(views) / (time.process_time() - start)


def _reference_sample(rules: int) -> int:
    return max(3, min(400, 400_000 // max(rules, 1)))


def new_flow_records(plan: Plan, progress) -> list[Record]:
    records = []
    for policies in plan.calico_policies:
        progress(f"Calico cluster, {policies:,} policies")
        workload = calico_workload(policies, packets=2048 if policies >= 10_000 else 8192)
        fast = compiled_rate(workload, plan.repeat)
        slow = reference_rate(workload, _reference_sample(workload.rules * 4))
        records.append(_record(f"new-flow verdict, Calico {policies} policies "
                               "(filter FORWARD, denied: every policy walked)", "compiled",
                               fast, "pkt/s", "reference", slow, workload.rules))
    for rules in plan.acl_rules:
        progress(f"flat ACL, {rules:,} rules")
        workload = acl_workload(rules, packets=16384)
        fast = compiled_rate(workload, plan.repeat)
        linear = compiled_rate(workload, plan.repeat, classify=False)
        slow = reference_rate(workload, _reference_sample(rules))
        name = f"new-flow verdict, ClassBench-style ACL {rules} rules"
        records.append(_record(name, "compiled", fast, "pkt/s", "reference", slow, rules))
        records.append(_record(name, "compiled-linear", linear, "pkt/s", "reference", slow,
                               rules))
    return records


def growth_records(plan: Plan, progress) -> list[Record]:
    """The same ACL shape from 1 rule up: how each engine's rate falls with rule count."""
    records = []
    for rules in plan.growth_rules:
        progress(f"growth, {rules:,} rules")
        workload = acl_workload(rules, packets=8192)
        slow = reference_rate(workload, _reference_sample(rules))
        for engine, classify in (("compiled", True), ("compiled-linear", False)):
            records.append(_record("growth: ACL new-flow verdicts", engine,
                                   compiled_rate(workload, plan.repeat, classify), "pkt/s",
                                   "reference", slow, rules))
    return records


# ------------------------------------------------------------------ conntrack


def _flows(n: int, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    client = (10 << 24) + rng.integers(0, 1 << 20, n)
    sport = rng.integers(1024, 65535, n)
    flows = np.zeros(n, dtype=[("src", np.uint32), ("sport", np.uint16)])
    flows["src"], flows["sport"] = client, sport
    return np.unique(flows)


def _packets(flows: np.ndarray, flags: int, seq: int, ack: int, reply: bool,
             action: int, now: float) -> np.ndarray:
    server = np.uint32((192 << 24) + (168 << 16) + 1)
    pkts = np.zeros(len(flows), dtype=PKT_DTYPE)
    pkts["src"] = server if reply else flows["src"]
    pkts["dst"] = flows["src"] if reply else server
    pkts["sport"] = 80 if reply else flows["sport"]
    pkts["dport"] = flows["sport"] if reply else 80
    pkts["proto"], pkts["tcp_flags"] = 6, flags
    pkts["seq"], pkts["ack"], pkts["window"] = seq, ack, 64240
    pkts["icmp_type"] = pkts["icmp_code"] = pkts["wscale"] = -1
    pkts["now"], pkts["action"] = now, action
    return pkts


def established_table(flows: np.ndarray) -> tuple[ArrayConntrackTable, np.ndarray]:
    """A table holding ``flows`` established (handshake confirmed) and a batch of their
    next data packets."""
    table = ArrayConntrackTable(capacity=1 << max(16, int(len(flows) * 2 - 1).bit_length()))
    table.process_batch(_packets(flows, SYN, 1000, 0, False, ACT_CONFIRM, 1.0))
    table.process_batch(_packets(flows, SYN | ACK, 5000, 1001, True, ACT_CONFIRM, 1.0))
    table.process_batch(_packets(flows, ACK, 1001, 5001, False, ACT_CONFIRM, 1.0))
    return table, _packets(flows, ACK | PSH, 1001, 5001, False, ACT_CONFIRM, 2.0)


def conntrack_records(plan: Plan, progress) -> list[Record]:
    progress(f"conntrack, {plan.conntrack_flows:,} flows")
    flows = _flows(plan.conntrack_flows)
    table, data = established_table(flows)
    out = table.process_batch(data)
    established = int((out["ctstate"] == 1).sum())
    if established != len(flows):
        raise RuntimeError(f"only {established} of {len(flows)} packets were ESTABLISHED")
    fast = len(data) / _median_cpu(lambda: table.process_batch(data), plan.repeat)
    if (known_flows(table, data) < 0).any():
        raise RuntimeError("an established flow is missing from the hash index")
    lookups = len(data) / _median_cpu(lambda: known_flows(table, data), plan.repeat)

    reference = ConntrackTable(capacity=1 << 22)
    sample = flows[:min(len(flows), 20_000)]
    keys = []
    for f in sample:
        src, sport = int(f["src"]), int(f["sport"])
        server = (192 << 24) + (168 << 16) + 1
        for key in (PacketKey(src, server, 6, sport, 80, tcp_flags=SYN, seq=1000),
                    PacketKey(server, src, 6, 80, sport, tcp_flags=SYN | ACK, seq=5000,
                              ack=1001),
                    PacketKey(src, server, 6, sport, 80, tcp_flags=ACK, seq=1001, ack=5001)):
            verdict = reference.process(key, 1.0)
            reference.confirm(verdict.entry_id, 1.0)
        keys.append(PacketKey(src, server, 6, sport, 80, tcp_flags=ACK | PSH, seq=1001,
                              ack=5001))
    start = time.process_time()
    for key in keys:
        reference.process(key, 2.0)
    slow = len(keys) / (time.process_time() - start)

    # A Python dict keyed by 5-tuple doing the least a tracker must: find, refresh, count.
    # It starts from the same batch (the fastest Python way: columns to lists, zip).
    entries = {(int(f["src"]), (192 << 24) + (168 << 16) + 1, 6, int(f["sport"]), 80): [0.0, 0]
               for f in flows}

    def dict_pass() -> None:
        for key in zip(data["src"].tolist(), data["dst"].tolist(), data["proto"].tolist(),
                       data["sport"].tolist(), data["dport"].tolist()):
            entry = entries.get(key)
            if entry is not None:
                entry[0] = 2.0
                entry[1] += 1

    dict_pass()
    if any(entry[1] == 0 for entry in entries.values()):
        raise RuntimeError("the dict tracker missed a flow")
    dict_rate = len(data) / _median_cpu(dict_pass, plan.repeat)
    slots = table.pool.shape[0]                    # the arrays grow: bytes per slot held
    size = float(sum(a.nbytes for a in (table.pool, table.tcp, table.hash, table.free))
                 / slots)
    n = len(flows)
    return [
        _record("established packets, conntrack fast path (nf_conntrack_in, TCP window "
                "tracking)", "compiled", fast, "pkt/s", "reference", slow, n),
        _record("established-flow lookup (fast path: known connection?) vs a Python dict "
                "keyed by 5-tuple", "compiled", lookups, "pkt/s", "python-dict", dict_rate, n),
        _record("established packets, full nf_conntrack_in vs a Python dict keyed by 5-tuple",
                "compiled", fast, "pkt/s", "python-dict", dict_rate, n),
        _record("conntrack memory per entry", "compiled", size, "B/entry", "target", 128.0,
                None),
    ]


# ------------------------------------------------------------------ compile cost


def _restore_seconds(ruleset, ipsets) -> float | None:
    """Wall seconds ``ipset restore`` + ``iptables-restore`` take in a fresh namespace (None
    without root or the tools)."""
    if os.geteuid() != 0 or not shutil.which("iptables-restore"):
        return None
    from pyroute2 import netns as pyroute2_netns

    from tracer.kernel import cleanup, nsexec

    name = cleanup.new_namespace_name()
    pyroute2_netns.create(name)
    try:
        start = time.perf_counter()
        if ipsets:
            nsexec.run(name, ["ipset", "restore"], input_text=format_ipsets(ipsets))
        nsexec.run(name, ["iptables-restore", "-w"], input_text=format_ruleset(ruleset),
                   timeout=300)
        return time.perf_counter() - start
    finally:
        cleanup.remove_namespace(name)


def compile_records(plan: Plan, progress) -> list[Record]:
    records = []
    for label, workload in (
            (f"flat ACL {plan.compile_rules} rules",
             acl_workload(plan.compile_rules, packets=16)),
            (f"Calico {plan.compile_rules} policies",
             calico_workload(plan.compile_rules, packets=16))):
        progress(f"compile, {label}")
        node = workload.node
        seconds = statistics.median(_wall(lambda: compile_node(node))
                                    for _ in range(plan.repeat))
        restore = _restore_seconds(node.ruleset, node.ruleset.ipsets)
        records.append(_record(f"compile time, {label}", "compiled", seconds, "s",
                               "iptables-restore" if restore is not None else None, restore,
                               workload.rules))
        if label.startswith("Calico"):
            records.append(_incremental(workload, plan.repeat))
    return records


def _wall(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _incremental(workload: Workload, repeat: int) -> Record:
    """One policy's chain changed (a rule removed): recompile with the previous result."""
    from dataclasses import replace

    from tracer.dataplane.ir import Chain

    node = workload.node
    first = compile_node(node)
    chains = node.ruleset.tables[Table.FILTER]
    name = next(n for n in chains if n.startswith("cali-pi-"))
    tables = dict(node.ruleset.tables)
    tables[Table.FILTER] = {**chains, name: Chain(name, chains[name].rules[:-1])}
    changed = replace(node, ruleset=replace(node.ruleset, tables=tables))
    full = statistics.median(_wall(lambda: compile_node(changed)) for _ in range(repeat))
    incremental = statistics.median(_wall(lambda: compile_node(changed, previous=first))
                                    for _ in range(repeat))
    return _record("one policy changed: incremental recompile", "compiled",
                   incremental * 1000, "ms", "full compile", full * 1000, workload.rules)


# ------------------------------------------------------------------ the suite

PARTS = (new_flow_records, conntrack_records, compile_records, growth_records)


def run_suite(plan: Plan, progress=lambda text: None) -> list[Record]:
    from tracer.bench.kernel import kernel_records   # it imports this module's helpers

    records: list[Record] = []
    for part in (*PARTS, kernel_records):
        records.extend(part(plan, progress))
    return records
