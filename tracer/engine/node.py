"""A node's dataplane compiled: every table as flat arrays, plus the answers its environment
gives (ipsets, addresses, interfaces, routes) as arrays the kernels read.

:func:`compile_node` is the entry point. A table whose rules hold something the compiler does
not express runs on the reference interpreter instead; :attr:`CompiledNode.fallback` says which
and why, and the CLI prints it. Interfaces are interned to ids on first sight (a probe may name
a veth the node's table does not list); the pattern hits of each new name are computed once.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from tracer.dataplane.events import EFFECTS, NetfilterEvent
from tracer.dataplane.interpreter import PacketView, TableResult, run_hook
from tracer.dataplane.ipsets import SET_TYPE_DIMS
from tracer.dataplane.ir import InterfaceMatch, Table
from tracer.dataplane.node import NodeDataplane, NodeEnvironment
from tracer.dataplane.state import NO_PINS, Pins
from tracer.engine import codes as C
from tracer.engine.kernels import walk_batch
from tracer.engine.program import (LoweredChain, Symbols, TableProgram, Unsupported,
                                   link_table, lower_chain)
from tracer.errors import InputError

_DIM_KIND = {"ip": 0, "net": 0, "port": 1, "bport": 2}
_NAT_EFFECTS = ("DNAT", "SNAT", "MASQUERADE")
GROUP_COLS = 9                     # ndims, kinds[3], widths[3], first key, end of keys


@dataclass(frozen=True)
class EnvArrays:
    """The node environment's answers as arrays (see tracer.engine.kernels)."""

    sets: np.ndarray           # int64[s, 2]: group range per set id
    groups: np.ndarray         # int64[g, GROUP_COLS]
    keys: np.ndarray           # int64[k, 3], sorted within each group
    local_addrs: np.ndarray    # int64, sorted
    routes: np.ndarray         # int64[r, 6]: table, network, mask, prefix length, kind, dev id
    wg_mark: int               # -1: no WireGuard routing rule


@dataclass(frozen=True)
class TableOutcomes:
    """Per packet of a batch: what one table decided. ``effect`` is an index into
    :data:`tracer.dataplane.events.EFFECTS` (a NAT effect's verdict is ACCEPT); ``rule`` is
    the deciding rule's number in ``chain`` (0: the built-in chain's policy)."""

    effect: np.ndarray
    chain: np.ndarray
    rule: np.ndarray
    row: np.ndarray            # the deciding rule's row in the table program (-1: policy)
    mark: np.ndarray
    ct_mark: np.ndarray
    notrack: np.ndarray
    events: np.ndarray | None  # int64[n, max_events, EVENT_COLS] when traced
    n_events: np.ndarray | None


class CompiledNode:
    """One node's ruleset as arrays; immutable apart from the interface interning cache."""

    def __init__(self, node: NodeDataplane, programs: dict[Table, TableProgram],
                 lowered: dict[Table, dict[str, LoweredChain]], fallback: dict[Table, str],
                 symbols: Symbols, env: EnvArrays):
        self.node = node
        self.programs = programs
        self.lowered = lowered
        self.fallback = fallback
        self.symbols = symbols
        self.env = env
        self.set_cache: dict = {}      # lowered ipsets, reused by an incremental compile
        self._lock = threading.Lock()
        self._iface_ids: dict[str, int] = {}
        self._iface_bits = np.zeros((0, max(1, len(symbols.iface_patterns))), dtype=np.uint8)
        self._iface_addr = np.zeros(0, dtype=np.int64)
        self._patterns = [InterfaceMatch("in", name) for name in symbols.iface_patterns]
        for name in _known_interfaces(node):
            self.iface_id(name)

    @property
    def name(self) -> str:
        return self.node.name

    # ------------------------------------------------------------------ interfaces

    def iface_id(self, name: str | None) -> int:
        """The id a batch's ``iif`` / ``oif`` column carries for ``name`` (-1: none)."""
        if name is None:
            return C.NO_VALUE
        found = self._iface_ids.get(name)
        if found is not None:
            return found
        with self._lock:
            if name in self._iface_ids:
                return self._iface_ids[name]
            new_id = len(self._iface_ids)
            hits = np.array([[p.matches(name) for p in self._patterns] or [False]],
                            dtype=np.uint8)
            device = self.node.interfaces.get(name)
            address = int(device.address) if device is not None and device.address else -1
            self._iface_bits = np.concatenate([self._iface_bits, hits])
            self._iface_addr = np.append(self._iface_addr, address)
            self._iface_ids[name] = new_id
            return new_id

    # ------------------------------------------------------------------ running

    def compiled(self, table: Table) -> bool:
        return table in self.programs

    def statistic_draws(self, pins: Pins) -> np.ndarray:
        """How each ``-m statistic`` match falls in a run with ``pins`` (before its ``!``),
        asked of the node's own environment so the answer is the reference's."""
        env = self.node.environment(pins)
        return np.array([env.statistic(m, None, chain, rule)                # type: ignore
                         for chain, rule, m in self.symbols.statistics] or [False],
                        dtype=np.bool_)

    def run_table(self, table: Table, hook: str, batch: np.ndarray, *, oif=C.NO_VALUE,
                  ct_state=0, ct_status=0, ct_mark=0, pins: Pins = NO_PINS,
                  trace: bool = False, max_events: int = 64) -> TableOutcomes:
        """One table's built-in chain ``hook`` for every row of a ``PACKET_DTYPE`` batch.
        ``oif``, ``ct_state`` (codes of tracer.engine.codes.CT_STATE_CODE), ``ct_status``
        (bits of :meth:`status_bits`) and ``ct_mark`` are scalars or per-packet arrays."""
        program = self.programs.get(table)
        if program is None:
            raise KeyError(f"{self.name}: table {table.value} is not compiled "
                           f"({self.fallback.get(table, 'no such table')})")
        if hook not in program.chain_ids:
            raise KeyError(f"{self.name}: table {table.value} has no chain {hook}")
        n = len(batch)

        def column(value) -> np.ndarray:
            return np.broadcast_to(np.asarray(value, dtype=np.int64), (n,))

        out = np.zeros((n, 8), dtype=np.int64)
        width = max_events if trace else 0
        while True:
            events = np.zeros((n, width, C.EVENT_COLS), dtype=np.int64)
            n_events = np.zeros(n, dtype=np.int64)
            cls = program.classifiers
            walk_batch(program.chains, program.rules, program.matches, program.ranges,
                       cls.of_chain, cls.meta, cls.bounds, cls.bits, cls.wild,
                       program.chain_ids[hook], self.env.sets, self.env.groups, self.env.keys,
                       self._iface_bits, self._iface_addr, self.env.local_addrs,
                       self.env.routes, self.env.wg_mark, self.statistic_draws(pins),
                       batch["saddr"], batch["daddr"], batch["protocol"], batch["sport"],
                       batch["dport"], batch["icmp_type"], batch["icmp_code"],
                       batch["tcp_flags"], batch["iif"], column(oif), batch["mark"],
                       column(ct_state), column(ct_status), column(ct_mark), out, events,
                       n_events, trace)
            if not trace or n == 0 or n_events.max() <= width:
                break
            width = int(n_events.max())
        self._raise_errors(program, out)
        return TableOutcomes(out[:, 0], out[:, 1], out[:, 2], out[:, 3], out[:, 4], out[:, 5],
                             out[:, 6], events if trace else None, n_events if trace else None)

    def status_bits(self, names) -> int:
        bits = self.symbols.status_bits
        return sum(bits[n] for n in set(names) if n in bits)

    def run_view(self, table: Table, hook: str, view: PacketView, env) -> TableResult:
        """The reference's contract (:func:`run_hook`) answered by the kernel; ``view`` is
        updated in place (mark, conntrack mark) as the reference updates it."""
        chains = self.node.ruleset.tables.get(table, {})
        if (table not in self.programs or hook not in chains
                or not isinstance(env, NodeEnvironment) or env.node is not self.node):
            return run_hook(self.node.ruleset, table, hook, view, env)
        batch = _view_batch(view, self.iface_id(view.iif))
        result = self.run_table(
            table, hook, batch, oif=self.iface_id(view.oif),
            ct_state=C.CT_STATE_CODE[view.ct_state], ct_status=self.status_bits(view.ct_status),
            ct_mark=view.ct_mark, pins=env.pins, trace=True)
        view.mark, view.ct_mark = int(result.mark[0]), int(result.ct_mark[0])
        return self.table_result(table, result, 0)

    def table_result(self, table: Table, result: TableOutcomes, i: int) -> TableResult:
        """Packet ``i`` of a traced batch as the reference's :class:`TableResult`."""
        program = self.programs[table]
        events = tuple(self._event(program, row) for row in result.events[i, :result.n_events[i]])
        effect = EFFECTS[result.effect[i]]
        row = int(result.row[i])
        nat = program.rule_objects[row].target if effect in _NAT_EFFECTS else None
        verdict = "ACCEPT" if effect in _NAT_EFFECTS else effect
        return TableResult(verdict, events, events[-1] if events else None, nat,
                           bool(result.notrack[i]))

    def _event(self, program: TableProgram, row: np.ndarray) -> NetfilterEvent:
        chain, kind, effect, number, target, before, after = (int(v) for v in row)
        kind_name = C.KIND_NAMES[kind]
        rule = None
        target_chain = None
        if kind == C.K_RULE:
            rule = program.rule_objects[program.chains[chain, 0] + number - 1]
            if effect in (C.E_JUMP, C.E_GOTO):
                target_chain = rule.target.chain           # type: ignore[union-attr]
        return NetfilterEvent(program.table.value, program.chain_names[chain], kind_name,
                              EFFECTS[effect], rule_number=number if kind == C.K_RULE else None,
                              rule=rule, target_chain=target_chain, mark_before=before,
                              mark_after=after)

    def _raise_errors(self, program: TableProgram, out: np.ndarray) -> None:
        """The reference's InputErrors, same words."""
        bad = np.flatnonzero(out[:, 7])
        if not len(bad):
            return
        i = bad[0]
        error, chain, number = out[i, 7], program.chain_names[out[i, 1]], int(out[i, 2])
        table = program.table.value
        if error == C.ERR_UNDEFINED_CHAIN:
            rule = program.rule_objects[program.chains[out[i, 1], 0] + number - 1]
            raise InputError(f"{table} chain {chain} rule {number} jumps to undefined chain "
                             f"{rule.target.chain!r}")                 # type: ignore[union-attr]
        if error == C.ERR_DEPTH:
            raise InputError(f"{table}: jumps nest deeper than 64 (chain loop through {chain}?)")
        start = program.chain_names[0]
        raise InputError(f"{table}: more than 1000000 rules evaluated from {start} "
                         "(goto loop?)")


def _view_batch(view: PacketView, iif: int) -> np.ndarray:
    from tracer.dataplane.batch import PACKET_DTYPE

    row = np.zeros(1, dtype=PACKET_DTYPE)
    row["saddr"], row["daddr"], row["protocol"] = view.src, view.dst, view.protocol
    for field_name, value in (("sport", view.sport), ("dport", view.dport),
                              ("icmp_type", view.icmp_type), ("icmp_code", view.icmp_code),
                              ("tcp_flags", view.tcp_flags)):
        row[field_name] = C.NO_VALUE if value is None else value
    row["iif"], row["mark"] = iif, view.mark
    return row


def _known_interfaces(node: NodeDataplane) -> list[str]:
    names = [i.name for i in node.interfaces.interfaces]
    names += [r.dev for r in node.routing.routes if r.dev is not None]
    return list(dict.fromkeys(names))


# ---------------------------------------------------------------------- compiling


def compile_node(node: NodeDataplane, *, previous: CompiledNode | None = None,
                 classify: bool = True) -> CompiledNode:
    """Compile every table of ``node``'s ruleset; a table the compiler cannot express falls
    back to the reference interpreter (recorded in ``fallback``).

    With ``previous`` (the same node compiled before a change), chains equal to the ones it
    compiled are reused and only changed chains are lowered again; the tables are relinked
    (a concatenation). ``classify=False`` keeps every chain a linear walk (for comparison)."""
    symbols = previous.symbols.copy() if previous is not None else Symbols()
    programs: dict[Table, TableProgram] = {}
    lowered_all: dict[Table, dict[str, LoweredChain]] = {}
    fallback: dict[Table, str] = {}
    for table, chains in node.ruleset.tables.items():
        before = _reusable(previous, table)
        try:
            _check_placeholders(chains)
            lowered = {name: (before[name][1] if name in before
                              and _same_chain(before[name][0], chain)
                              else lower_chain(chain, symbols, classify=classify))
                       for name, chain in chains.items()}
            _check_sets(node, lowered.values())
        except Unsupported as why:
            fallback[table] = str(why)
            continue
        lowered_all[table] = lowered
        programs[table] = link_table(table, chains, lowered)
    set_cache = dict(previous.set_cache) if previous is not None else {}
    env = compile_environment(node, symbols, set_cache)
    compiled = CompiledNode(node, programs, lowered_all, fallback, symbols, env)
    compiled.set_cache = set_cache
    return compiled


def _reusable(previous: CompiledNode | None, table: Table) -> dict:
    """Chain name -> (the chain as compiled, its lowering) from an earlier compile."""
    if previous is None or table not in previous.lowered:
        return {}
    chains = previous.node.ruleset.tables[table]
    return {name: (chains[name], part) for name, part in previous.lowered[table].items()}


def _same_chain(a, b) -> bool:
    return a is b or (len(a.rules) == len(b.rules) and a == b)


def _check_placeholders(chains) -> None:
    absent = sorted(name for name, chain in chains.items() if chain.placeholder)
    if absent:
        raise Unsupported(f"chain {absent[0]} is not in the dump (the reference says, on each "
                          "trace that reaches it, that it is assumed to return)")


def _check_sets(node: NodeDataplane, lowered) -> None:
    for part in lowered:
        for name in part.set_names:
            if name not in node.ruleset.ipsets or name not in node.ipsets:
                raise Unsupported(f"ipset {name} is not loaded (the reference warns and "
                                  "treats it as empty)")


def compile_environment(node: NodeDataplane, symbols: Symbols,
                        set_cache: dict | None = None) -> EnvArrays:
    """Ipsets, local addresses and routes; route devices carry the ids CompiledNode gives the
    node's known interfaces (interned first, in :func:`_known_interfaces` order)."""
    sets, groups, keys = _compile_sets(node, symbols, {} if set_cache is None else set_cache)
    routing = node.routing
    local = np.array(sorted(int(a) for a in routing.local_addresses), dtype=np.int64)
    dev_ids = {name: i for i, name in enumerate(_known_interfaces(node))}
    routes = np.array([[r.table, int(r.dst.network_address), int(r.dst.netmask),
                        r.dst.prefixlen, C.ROUTE_KIND[r.kind],
                        C.NO_VALUE if r.dev is None else dev_ids[r.dev]]
                       for r in routing.routes], dtype=np.int64).reshape(-1, 6)
    wg_mark = -1 if routing.wireguard_mark is None else routing.wireguard_mark
    return EnvArrays(sets, groups, keys, local, routes, wg_mark)


def _compile_sets(node: NodeDataplane, symbols: Symbols, cache: dict):
    """Every set's groups (key offsets made absolute) and sorted keys. ``cache`` (set name ->
    (IpSet, group rows with offsets from 0, keys)) keeps the lowering of unchanged sets."""
    empty = (np.zeros((0, GROUP_COLS), dtype=np.int64), np.zeros((0, 3), dtype=np.int64))
    parts = []                         # per set id: (group rows, keys)
    for name in symbols.ipsets:        # ids are insertion order
        ipset = node.ruleset.ipsets.get(name)
        if ipset is None or name not in node.ipsets:
            parts.append(empty)        # only a table that falls back names it
            continue
        found = cache.get(name)
        if found is None or found[0] is not ipset:
            found = cache[name] = (ipset, *_lower_set(node, name, ipset))
        parts.append(found[1:])
    n_groups = np.array([len(g) for g, _ in parts], dtype=np.int64)
    n_keys = np.array([len(k) for _, k in parts], dtype=np.int64)
    sets = np.zeros((max(1, len(parts)), 2), dtype=np.int64)
    ends = np.cumsum(n_groups)
    sets[:len(parts), 0] = ends - n_groups
    sets[:len(parts), 1] = ends
    groups = np.concatenate([g for g, _ in parts] or [empty[0]])
    groups[:, 7:9] += np.repeat(np.cumsum(n_keys) - n_keys, n_groups)[:, None]
    keys = np.concatenate([k for _, k in parts] or [empty[1]])
    return sets, groups, np.ascontiguousarray(keys)


def _lower_set(node: NodeDataplane, name: str, ipset) -> tuple[np.ndarray, np.ndarray]:
    kinds = [_DIM_KIND[k] for k in SET_TYPE_DIMS.get(ipset.set_type, ())]
    group_rows, key_parts, n_keys = [], [], 0
    for widths, members in node.ipsets.groups(name).items():
        rows = np.zeros((len(members), 3), dtype=np.int64)
        rows[:, :len(kinds)] = np.array(sorted(members), dtype=np.int64).reshape(
            len(members), len(kinds))
        rows = rows[np.lexsort((rows[:, 2], rows[:, 1], rows[:, 0]))]
        padded_kinds = kinds + [0] * (3 - len(kinds))
        padded_widths = list(widths) + [0] * (3 - len(widths))
        group_rows.append([len(kinds), *padded_kinds, *padded_widths, n_keys,
                           n_keys + len(rows)])
        key_parts.append(rows)
        n_keys += len(rows)
    groups = np.array(group_rows, dtype=np.int64).reshape(len(group_rows), GROUP_COLS)
    keys = np.concatenate(key_parts) if key_parts else np.zeros((0, 3), dtype=np.int64)
    return groups, keys
