"""The reference netfilter interpreter: one table's hook chain, one packet, plain Python.

It walks chains as ``nft_do_chain`` / ``ipt_do_table`` do and records what the kernel's
TRACE reports, so it is the truth a faster path is checked against:

- a rule matches when every match does, in order (``!`` applied per match);
- a matched rule with a non-terminal target (MARK, CONNMARK, LOG, NFLOG, TRACE, NOTRACK, none)
  records a ``rule`` event and evaluation goes on with the next rule;
- ACCEPT / DROP / REJECT and the NAT targets end the table for this hook;
- ``-j`` pushes the next rule on a stack; ``-g`` does not, so a later RETURN goes back to the
  chain that *jumped* into the chain that did the goto;
- an explicit ``-j RETURN`` is a ``rule`` event; falling off the end of a user chain is a
  ``return`` event for that chain (ip_tables' TRACE prints both; on nf_tables
  ``xtables-monitor`` shows no line for the fall-off, see ``__nft_trace_verdict``);
- RETURN with an empty stack, or the end of the built-in chain, applies its policy
  (``policy`` event).

Everything the interpreter cannot know from the rules (routes, addresses, ipset contents,
random choices) it asks its :class:`Environment`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from tracer.dataplane.events import NetfilterEvent
from tracer.dataplane.ir import (
    AddressMatch, AddrTypeMatch, ConnmarkMatch, ConnMarkTarget, ConntrackMatch, Dnat, Goto,
    IcmpMatch, InterfaceMatch, IpvsMatch, Jump, LimitMatch, Log, MarkMatch, Masquerade, Match, Nflog,
    NoTrack, PortMatch, ProtocolMatch, ProtocolModuleMatch, Reject, RpfilterMatch, Rule,
    Ruleset, SetMark, SetMatch, Snat, StatisticMatch, Table, Target, TcpFlagsMatch,
    TraceTarget, Verdict,
)
from tracer.errors import InputError
from tracer.protocols import ICMP, PROTOCOL_NUMBERS

# nf_tables refuses rulesets deeper than NFT_JUMP_STACK_SIZE (16); legacy ip_tables allows
# more. A traversal deeper than this, or longer than MAX_STEPS rules, is a loop.
MAX_DEPTH = 64
MAX_STEPS = 1_000_000

# How the kernel's trace names an effect (xtables-monitor): NAT targets return NF_ACCEPT,
# REJECT drops after sending its error, NOTRACK continues.
KERNEL_TRACE_VERDICT = {"DNAT": "ACCEPT", "SNAT": "ACCEPT", "MASQUERADE": "ACCEPT",
                        "REJECT": "DROP", "NOTRACK": "CONTINUE"}



@dataclass
class PacketView:
    """What netfilter sees of one packet at one hook; MARK/CONNMARK targets change it."""

    src: int
    dst: int
    protocol: int
    sport: int | None
    dport: int | None
    icmp_type: int | None
    icmp_code: int | None
    tcp_flags: int | None
    iif: str | None
    oif: str | None
    mark: int
    ct_state: str                      # NEW ESTABLISHED RELATED INVALID UNTRACKED
    # "DNAT"/"SNAT" (the entry's tuples differ by NAT) and --ctstatus bits
    # ("EXPECTED", "SEEN_REPLY", "ASSURED", "CONFIRMED").
    ct_status: frozenset[str] = frozenset()
    ct_mark: int = 0


class Environment(Protocol):
    def ipset_contains(self, match: SetMatch, packet: PacketView) -> bool: ...

    def addr_type(self, addr: int, iface: str | None) -> str: ...

    def rpf_ok(self, packet: PacketView, match: RpfilterMatch) -> bool:
        """The reverse-path test *before* ``--invert`` is applied."""
        ...

    def statistic(self, match: StatisticMatch, packet: PacketView, chain: str,
                  rule: Rule) -> bool:
        """Whether a random/nth statistic match of ``rule`` in ``chain`` fires (before its
        ``!``)."""
        ...


@dataclass(frozen=True)
class TableResult:
    verdict: str                       # ACCEPT | DROP | REJECT
    events: tuple[NetfilterEvent, ...]
    deciding: NetfilterEvent | None    # the rule or policy event that ended the traversal
    nat: Target | None                 # DNAT/SNAT/MASQUERADE hit in the nat table
    notrack: bool
    warnings: tuple[str, ...] = ()


@dataclass
class _Walk:
    """Mutable state of one traversal."""

    ruleset: Ruleset
    table: Table
    packet: PacketView
    env: Environment
    events: list[NetfilterEvent] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notrack: bool = False
    chain: str = ""                            # where the rule being matched sits
    rule: Rule | None = None
    table_name: str = field(init=False)        # the enum's value, read once per event

    def __post_init__(self) -> None:
        self.table_name = self.table.value


def run_hook(ruleset: Ruleset, table: Table, chain: str, packet: PacketView,
             env: Environment) -> TableResult:
    """Traverse built-in ``chain`` of ``table`` for ``packet``; ``packet`` is updated in place
    (mark, conntrack mark). A table without that chain lets the packet through untouched."""
    chains = ruleset.tables.get(table, {})
    if chain not in chains:
        return TableResult("ACCEPT", (), None, None, False)
    walk = _Walk(ruleset, table, packet, env)
    stack: list[tuple[str, int]] = []          # (chain, index of the rule after the jump)
    current, index = chain, 0
    for _step in range(MAX_STEPS):
        rules = chains[current].rules
        if index >= len(rules):
            if current != chain:               # a user chain ran out: implicit RETURN
                walk.events.append(_event(walk, current, "return", "RETURN",
                                          len(rules) + 1, None))
        else:
            rule = rules[index]
            index += 1
            walk.chain, walk.rule = current, rule
            for match in rule.matches:
                if not _MATCHERS[type(match)](match, walk):
                    break
            else:
                match = None
            if match is not None:
                continue
            before = packet.mark
            effect, target_chain = _apply(rule.target, walk)
            event = _event(walk, current, "rule", effect, index, rule, before, target_chain)
            walk.events.append(event)
            if effect in ("CONTINUE", "NOTRACK"):
                continue
            if effect in ("JUMP", "GOTO"):
                if target_chain not in chains:
                    raise InputError(f"{table.value} chain {current} rule {index} jumps to "
                                     f"undefined chain {target_chain!r}")
                if effect == "JUMP":
                    if len(stack) >= MAX_DEPTH:
                        raise InputError(f"{table.value}: jumps nest deeper than {MAX_DEPTH} "
                                         f"(chain loop through {current}?)")
                    stack.append((current, index))
                current, index = target_chain, 0
                if chains[current].placeholder:
                    walk.warnings.append(f"chain {current} is not in the dump: verdict assumes "
                                         "it returns")
                continue
            if effect != "RETURN":
                verdict = "ACCEPT" if effect in ("DNAT", "SNAT", "MASQUERADE") else effect
                nat = rule.target if effect in ("DNAT", "SNAT", "MASQUERADE") else None
                return _result(walk, verdict, event, nat)
        # RETURN, or the end of a chain: back to the caller, else the hook's policy.
        if stack:
            current, index = stack.pop()
            continue
        policy = chains[chain].policy or "ACCEPT"
        event = _event(walk, chain, "policy", policy, None, None)
        walk.events.append(event)
        return _result(walk, policy, event, None)
    raise InputError(f"{table.value}: more than {MAX_STEPS} rules evaluated from {chain} "
                     "(goto loop?)")


def _event(walk: _Walk, chain: str, kind: str, effect: str, number: int | None,
           rule: Rule | None, mark_before: int | None = None,
           target_chain: str | None = None) -> NetfilterEvent:
    after = walk.packet.mark
    return NetfilterEvent(walk.table_name, chain, kind, effect,  # type: ignore[arg-type]
                          rule_number=number if kind == "rule" else None, rule=rule,
                          target_chain=target_chain,
                          mark_before=after if mark_before is None else mark_before,
                          mark_after=after)


def _result(walk: _Walk, verdict: str, deciding: NetfilterEvent | None,
            nat: Target | None) -> TableResult:
    return TableResult(verdict, tuple(walk.events), deciding, nat, walk.notrack,
                       tuple(dict.fromkeys(walk.warnings)))


# ----------------------------------------------------------------------------- targets


def _apply(target: Target | None, walk: _Walk) -> tuple[str, str | None]:
    """Apply a matched rule's target: (effect, chain for JUMP/GOTO)."""
    packet = walk.packet
    if target is None or isinstance(target, (Log, Nflog, TraceTarget)):
        return "CONTINUE", None
    if isinstance(target, Verdict):
        return target.name, None
    if isinstance(target, Reject):
        return "REJECT", None
    if isinstance(target, Jump):
        return "JUMP", target.chain
    if isinstance(target, Goto):
        return "GOTO", target.chain
    if isinstance(target, SetMark):
        # xt_MARK: skb->mark = (skb->mark & ~mask) ^ value
        packet.mark = ((packet.mark & ~target.mask) ^ target.value) & 0xFFFFFFFF
        return "CONTINUE", None
    if isinstance(target, ConnMarkTarget):
        _connmark(target, packet)
        return "CONTINUE", None
    if isinstance(target, NoTrack):
        walk.notrack = True                    # xt_CT: attaches the untracked entry, continues
        return "NOTRACK", None
    if isinstance(target, Dnat):
        return "DNAT", None
    if isinstance(target, Snat):
        return "SNAT", None
    if isinstance(target, Masquerade):
        return "MASQUERADE", None
    raise TypeError(f"unknown target {target!r}")


def _connmark(target: ConnMarkTarget, packet: PacketView) -> None:
    if not _tracked(packet):
        return                                 # xt_connmark: no conntrack entry, no change
    if target.mode == "set":
        packet.ct_mark = ((packet.ct_mark & ~target.mask) ^ target.value) & 0xFFFFFFFF
    elif target.mode == "save":
        packet.ct_mark = ((packet.ct_mark & ~target.ctmask)
                          ^ (packet.mark & target.nfmask)) & 0xFFFFFFFF
    else:
        packet.mark = ((packet.mark & ~target.nfmask)
                       ^ (packet.ct_mark & target.ctmask)) & 0xFFFFFFFF


def _tracked(packet: PacketView) -> bool:
    return packet.ct_state not in ("INVALID", "UNTRACKED")


# ----------------------------------------------------------------------------- matches


def _match(m: Match, walk: _Walk) -> bool:
    """One match, ``!`` included."""
    return _MATCHERS[type(m)](m, walk)


def _protocol(m: ProtocolMatch, walk: _Walk) -> bool:
    return (m.protocol == 0 or walk.packet.protocol == m.protocol) ^ m.negated


def _address(m: AddressMatch, walk: _Walk) -> bool:
    p = walk.packet
    return m.cidr.contains(p.src if m.direction == "src" else p.dst) ^ m.negated


def _interface(m: InterfaceMatch, walk: _Walk) -> bool:
    p = walk.packet
    return m.matches(p.iif if m.direction == "in" else p.oif) ^ m.negated


def _port(m: PortMatch, walk: _Walk) -> bool:
    port = walk.packet.sport if m.direction == "src" else walk.packet.dport
    # No L4 header to read: the kernel's tcp/multiport match fails (hotdrop), ! or not.
    return port is not None and (m.contains(port) ^ m.negated)


def _tcp_flags(m: TcpFlagsMatch, walk: _Walk) -> bool:
    flags = walk.packet.tcp_flags
    return flags is not None and (((flags & m.mask) == m.comp) ^ m.negated)


def _protocol_module(m: ProtocolModuleMatch, walk: _Walk) -> bool:
    return walk.packet.protocol == PROTOCOL_NUMBERS.get(m.module)


def _mark(m: MarkMatch, walk: _Walk) -> bool:
    return ((walk.packet.mark & m.mask) == m.value) ^ m.negated


def _connmark_match(m: ConnmarkMatch, walk: _Walk) -> bool:
    p = walk.packet
    return _tracked(p) and (((p.ct_mark & m.mask) == m.value) ^ m.negated)


def _set(m: SetMatch, walk: _Walk) -> bool:
    if m.set_name not in walk.ruleset.ipsets:
        walk.warnings.append(f"ipset {m.set_name} is not loaded: treated as empty")
    return walk.env.ipset_contains(m, walk.packet) ^ m.negated


def _ipvs(m: IpvsMatch, walk: _Walk) -> bool:
    """xt_ipvs ``ipvs_mt``: with ``--ipvs`` alone, ``skb->ipvs_property`` (xor its ``!``);
    with any other option, false unless the packet is IPVS's. A dump does not carry the
    kernel's IPVS table, so the packet is taken as not IPVS's, and the trace says so."""
    walk.warnings.append(f"{walk.chain}: '-m ipvs' needs the kernel's IPVS table, which the "
                         "dump lacks: the packet is taken as not an IPVS connection")
    only_property = not any((m.vproto, m.vaddr, m.vport, m.vdir, m.vmethod, m.vportctl))
    return only_property and "ipvs" in m.negated


def _rpfilter(m: RpfilterMatch, walk: _Walk) -> bool:
    return walk.env.rpf_ok(walk.packet, m) ^ m.invert


def _limit(m: LimitMatch, walk: _Walk) -> bool:
    return True                                # one traced packet never exceeds a rate


def _statistic(m: StatisticMatch, walk: _Walk) -> bool:
    return walk.env.statistic(m, walk.packet, walk.chain, walk.rule) ^ m.negated


def _icmp(m: IcmpMatch, p: PacketView) -> bool:
    if p.protocol != ICMP or p.icmp_type is None:
        return False
    if m.icmp_type is None:                    # "any": type 0xFF matches every type
        return not m.negated
    hit = p.icmp_type == m.icmp_type and (m.icmp_code is None or p.icmp_code == m.icmp_code)
    return hit ^ m.negated


def _conntrack(m: ConntrackMatch, p: PacketView) -> bool:
    """xt_conntrack ``conntrack_mt``: state first; without an entry (INVALID, UNTRACKED) the
    match holds only if it tested the state; then the status bits."""
    tracked = _tracked(p)
    if m.states:
        have = {p.ct_state} | (set(p.ct_status) & {"DNAT", "SNAT"} if tracked else set())
        if bool(m.states & have) == m.negated:
            return False
    if not tracked:
        return bool(m.states)
    if m.statuses is not None:
        if any(s in p.ct_status for s in m.statuses) == m.status_negated:
            return False
    return True


def _addrtype(m: AddrTypeMatch, walk: _Walk) -> bool:
    p = walk.packet
    iface = {"in": p.iif, "out": p.oif}.get(m.limit_iface or "")
    if m.src_type:
        kind = walk.env.addr_type(p.src, iface)
        if (kind in m.src_type.split(",")) == m.src_negated:
            return False
    if m.dst_type:
        kind = walk.env.addr_type(p.dst, iface)
        if (kind in m.dst_type.split(",")) == m.dst_negated:
            return False
    return True


# Each match type's test, looked up once per match rather than through an isinstance chain.
_MATCHERS = {
    ProtocolMatch: _protocol, AddressMatch: _address, InterfaceMatch: _interface,
    PortMatch: _port, TcpFlagsMatch: _tcp_flags,
    IcmpMatch: lambda m, walk: _icmp(m, walk.packet),
    ProtocolModuleMatch: _protocol_module, MarkMatch: _mark, ConnmarkMatch: _connmark_match,
    ConntrackMatch: lambda m, walk: _conntrack(m, walk.packet),
    SetMatch: _set, AddrTypeMatch: _addrtype, RpfilterMatch: _rpfilter, LimitMatch: _limit,
    StatisticMatch: _statistic, IpvsMatch: _ipvs,
}
