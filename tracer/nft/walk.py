"""Packets through an nftables table with nftables' semantics (net/netfilter/nf_tables_core.c
``nft_do_chain``), as a table runner the reference pipeline plugs in.

What differs from the iptables interpreter (:mod:`tracer.dataplane.interpreter`):

- each base chain is its own traversal at its own priority: ``accept`` (and a NAT statement)
  ends only the current base chain, the hook's next base chain still runs; ``drop`` and
  ``reject`` end the packet. The pipeline runs felix's layers in base-chain priority order
  (:attr:`NftTables.hook_tables`; nat chains where the NAT core runs them);
- ``iifname vmap @map``: a hit applies the element's verdict (``goto <chain>``), a miss goes
  on with the next rule;
- ``ct status dnat`` / ``!= dnat`` need a conntrack entry: without one (untracked, invalid) the
  expression breaks and the rule does not match, negated or not (nft_ct_get_eval);
- jump/goto/return and the implicit return at a regular chain's end are as in iptables; a
  base chain's end applies its policy; jumps nest at most 16 deep (NFT_JUMP_STACK_SIZE).

Events are named as nftables names them: table ``calico``, the chain's nftables name, and
the rule's handle (the number ``nft -a list ruleset`` shows after loading the rendered text).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from tracer.dataplane import ir
from tracer.dataplane.events import NetfilterEvent
from tracer.dataplane.interpreter import _MATCHERS, _Walk, _apply, PacketView, TableResult
from tracer.dataplane.ipsets import IpSetIndex
from tracer.dataplane.ir import Table
from tracer.dataplane.node import set_contains
from tracer.errors import InputError
from tracer.nft.model import HOOKS, BaseChain, NftRule, NftTable, VmapMatch
from tracer.nft.translate import BASE_CHAINS

NFT_JUMP_STACK_SIZE = 16
MAX_STEPS = 1_000_000
NAT_EFFECTS = ("DNAT", "SNAT", "MASQUERADE")


@dataclass(frozen=True)
class ListedRule(ir.Rule):
    """An nftables rule as the trace shows it: its IR (for provenance and drop reasons) and
    the text nft lists (``format_rule`` prints ``listing``)."""

    listing: str = ""
    handle: int = 0


def rule_handles(table: NftTable) -> dict[tuple[str, int], int]:
    """The handle each rule gets when the rendered text is loaded into a fresh table:
    nft numbers the table's objects in the order its batch creates them, chains first, then
    sets, then maps, then each chain's rules; a rule's anonymous set (``{ 53, 8080 }``; one
    element is written as a plain value) takes the handle just before the rule's."""
    handle = len(table.chains) + len(table.sets) + len(table.maps)
    out = {}
    for chain in table.chains.values():
        for index, rule in enumerate(chain.rules):
            handle += anonymous_sets(rule) + 1
            out[(chain.name, index)] = handle
    return out


def anonymous_sets(rule: NftRule) -> int:
    """Inline sets nft creates for the rule: port lists of more than one element."""
    return sum(1 for m in rule.matches
               if isinstance(m, ir.PortMatch) and m.multiport and len(m.ranges) > 1)


class CompiledTable:
    """One node's table prepared for walking: rules with their handles (the kernel's, when
    read from a listing; else the ones loading the rendered text gives) and the table's own
    sets, which ``ip saddr @set`` looks up."""

    def __init__(self, table: NftTable, handles: Mapping[tuple[str, int], int] | None = None):
        self.table = table
        handles = handles or rule_handles(table)
        self.sets = IpSetIndex({name: replace(s.ipset, name=name)
                                for name, s in table.sets.items()})
        self.rules: dict[str, tuple[tuple[ListedRule, tuple], ...]] = {}
        for chain in table.chains.values():
            prepared = []
            for index, rule in enumerate(chain.rules):
                handle = handles.get((chain.name, index), 0)
                shown = ListedRule(
                    matches=tuple(m for m in rule.matches if not isinstance(m, VmapMatch)),
                    target=rule.target, comments=(rule.comment,) if rule.comment else (),
                    provenance=rule.provenance, listing=_listing(rule, handle), handle=handle)
                prepared.append((shown, rule.matches))
            self.rules[chain.name] = tuple(prepared)


# nat-type base chains are not hooked directly: the NAT core (nf_nat_register_fn) runs them
# from its own hooks at fixed priorities, ordered among themselves by their chain priority.
NAT_CORE_PRIORITY = {"PREROUTING": -100, "OUTPUT": -100, "INPUT": 100, "POSTROUTING": 100}


def hook_order() -> dict[str, tuple[Table, ...]]:
    """Per hook (iptables' name), felix's layers in the order their base chains run: by
    priority (felix/nftables/table.go baseChains), nat chains where the NAT core runs them.
    That makes felix's nat-INPUT (dstnat) run after filter-INPUT and its nat-OUTPUT
    (srcnat+10) before filter-OUTPUT, as iptables' nat tables do."""
    order = {}
    for kernel in HOOKS:
        layers = []
        for layer, chains in BASE_CHAINS.items():
            if kernel in chains:
                kind, priority = chains[kernel]
                value = (NAT_CORE_PRIORITY[kernel] if kind == "nat"
                         else BaseChain(kind, HOOKS[kernel], priority).priority_value)
                layers.append((value, layer))
        order[kernel] = tuple(layer for _, layer in sorted(layers, key=lambda x: x[0]))
    return order


def _listing(rule: NftRule, handle: int) -> str:
    comment = f' comment "{rule.comment}"' if rule.comment else ""
    return f"{rule.text}{comment} # handle {handle}"


def run_base_chain(compiled: CompiledTable, ruleset: ir.Ruleset, layer: Table, chain: str,
                   packet: PacketView, env) -> TableResult:
    """Traverse base chain ``chain`` for ``packet`` (updated in place: mark, ct mark)."""
    table = compiled.table
    if chain not in table.chains:
        return TableResult("ACCEPT", (), None, None, False)
    walk = _Walk(ruleset, layer, packet, env)
    walk.table_name = table.name
    stack: list[tuple[str, int]] = []
    current, index = chain, 0
    for _step in range(MAX_STEPS):
        rules = compiled.rules[current]
        if index < len(rules):
            shown, matches = rules[index]
            index += 1
            walk.chain, walk.rule = current, shown
            if not all(_matches(m, walk, compiled) for m in matches):
                continue
            before = packet.mark
            effect, target_chain = _verdict(shown, matches, walk, table)
            event = _event(walk, current, "rule", effect, shown, before, target_chain)
            walk.events.append(event)
            if effect in ("CONTINUE", "NOTRACK"):
                continue
            if effect in ("JUMP", "GOTO"):
                if target_chain not in table.chains:
                    raise InputError(f"{table.name} chain {current} handle {shown.handle} "
                                     f"jumps to undefined chain {target_chain!r}")
                if effect == "JUMP":
                    if len(stack) >= NFT_JUMP_STACK_SIZE:
                        raise InputError(f"{table.name}: jumps nest deeper than "
                                         f"{NFT_JUMP_STACK_SIZE} (through {current})")
                    stack.append((current, index))
                current, index = target_chain, 0
                continue
            if effect != "RETURN":
                verdict = "ACCEPT" if effect in NAT_EFFECTS else effect
                nat = shown.target if effect in NAT_EFFECTS else None
                return TableResult(verdict, tuple(walk.events), event, nat, walk.notrack,
                                   tuple(dict.fromkeys(walk.warnings)))
        elif current != chain:                     # a regular chain ran out: implicit return
            walk.events.append(_event(walk, current, "return", "RETURN", None))
        if stack:
            current, index = stack.pop()
            continue
        base = table.chains[chain].base
        policy = (base.policy if base is not None else "accept").upper()
        event = _event(walk, chain, "policy", policy, None)
        walk.events.append(event)
        return TableResult(policy, tuple(walk.events), event, None, walk.notrack,
                           tuple(dict.fromkeys(walk.warnings)))
    raise InputError(f"{table.name}: more than {MAX_STEPS} rules evaluated from {chain}")


def _matches(match, walk: _Walk, compiled: CompiledTable) -> bool:
    if isinstance(match, VmapMatch):
        return True                                # the lookup happens as the verdict
    if isinstance(match, ir.SetMatch):
        return set_contains(compiled.sets, match, walk.packet) ^ match.negated
    if isinstance(match, ir.ConntrackMatch) and match.states & {"DNAT", "SNAT"}:
        # ``ct status``: no conntrack entry, no match (negated or not).
        if walk.packet.ct_state in ("INVALID", "UNTRACKED"):
            return False
        have = set(walk.packet.ct_status)
        return bool(match.states & have) != match.negated
    return _MATCHERS[type(match)](match, walk)


def _verdict(shown: ListedRule, matches, walk: _Walk, table: NftTable):
    """The rule's effect; a verdict map's element when the rule is a vmap lookup."""
    vmap = next((m for m in matches if isinstance(m, VmapMatch)), None)
    if vmap is None:
        return _apply(shown.target, walk)
    key = walk.packet.iif if vmap.direction == "in" else walk.packet.oif
    found = table.maps[vmap.map_name].lookup(key)
    if found is None:
        return "CONTINUE", None
    return _apply(found, walk)


def _event(walk: _Walk, chain: str, kind: str, effect: str, rule: ListedRule | None,
           mark_before: int | None = None, target_chain: str | None = None) -> NetfilterEvent:
    after = walk.packet.mark
    return NetfilterEvent(walk.table_name, chain, kind, effect,  # type: ignore[arg-type]
                          rule_number=rule.handle if rule is not None else None, rule=rule,
                          target_chain=target_chain,
                          mark_before=after if mark_before is None else mark_before,
                          mark_after=after)


class NftTables:
    """A table runner (:class:`tracer.dataplane.stages.TableRunner`) over each node's felix
    nftables table: the pipeline asks for (layer, hook) and gets base chain
    ``<layer>-<HOOK>``; :attr:`hook_tables` tells it the order the base chains run in."""

    dataplane_name = "nftables"

    def __init__(self, table_of: Callable[[str], NftTable | CompiledTable]):
        self._table_of = table_of
        self._compiled: dict[str, CompiledTable] = {}
        self.hook_tables: dict[str, tuple[Table, ...]] = hook_order()

    def compiled(self, node: str) -> CompiledTable:
        found = self._compiled.get(node)
        if found is None:
            made = self._table_of(node)
            found = made if isinstance(made, CompiledTable) else CompiledTable(made)
            self._compiled[node] = found
        return found

    def __call__(self, node, table: Table, hook: str, view: PacketView, env) -> TableResult:
        compiled = self.compiled(node.name)
        return run_base_chain(compiled, node.ruleset, table, f"{table.value}-{hook}", view, env)
