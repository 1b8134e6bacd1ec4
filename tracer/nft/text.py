"""nftables text: one rule's body as felix renders it, and a ruleset as ``nft -f`` input.

Rule bodies follow felix/nftables/match_builder.go (clauses in the order felix adds them, which
is the order of the IR's matches), actions.go (every action after a ``counter``) and
renderer.go (a rule with neither match nor action is ``continue``). Sets, maps and chains are
printed the way ``nft list ruleset`` lays out a table, so the text loads with ``nft -f``.
"""

from __future__ import annotations

from collections.abc import Mapping
from ipaddress import IPv4Network

from tracer.dataplane import ir
from tracer.nft.model import BaseChain, NftMatch, NftRuleset, NftTable, VmapMatch
from tracer.protocols import CALICO_PROTOCOLS, PROTOCOL_NAMES

# Protocols felix names (policy rules and static rules say these by name; others by number).
_NAMED = {number: name for name, number in CALICO_PROTOCOLS.items()}
# ``--ctstate`` words in the order felix writes them ("RELATED,ESTABLISHED").
_STATE_ORDER = ("RELATED", "ESTABLISHED", "INVALID", "NEW", "UNTRACKED")
# Conntrack pseudo-states that nftables tests as ``ct status`` (rules/static.go, nft branch).
_STATUS_STATES = {"DNAT": "dnat", "SNAT": "snat"}
_IFACE_KEY = {"in": "iifname", "out": "oifname"}
# nft(8) accepts these priority names only on these hooks; elsewhere the number is written.
_NAMED_PRIORITY_HOOKS = {"dstnat": {"prerouting"}, "srcnat": {"postrouting"}}
_LIMIT_UNITS = {"s": "second", "sec": "second", "second": "second", "m": "minute",
                "min": "minute", "minute": "minute", "h": "hour", "hour": "hour",
                "d": "day", "day": "day"}


def hexmark(value: int) -> str:
    """Go's ``%#x``."""
    return f"{value:#x}"


def rule_body(matches: tuple[NftMatch, ...], target: ir.Target | None,
              set_types: Mapping[str, str]) -> str:
    """renderRule: the match clauses, then ``counter`` and the action when there is one."""
    proto: int | None = None
    clauses = []
    for match in matches:
        if isinstance(match, ir.ProtocolMatch) and not match.negated:
            proto = match.protocol
        clauses.append(match_clause(match, proto, set_types))
    fragments = [c for c in clauses if c]
    if target is not None:
        fragments += ["counter", action_text(target)]
    return " ".join(fragments) or "continue"


def match_clause(match: NftMatch, proto: int | None, set_types: Mapping[str, str]) -> str:
    ne = "!= " if getattr(match, "negated", False) else ""
    if isinstance(match, VmapMatch):
        return f"{_IFACE_KEY[match.direction]} vmap @{match.map_name}"
    if isinstance(match, ir.ProtocolMatch):
        return f"meta l4proto {ne}{_NAMED.get(match.protocol, str(match.protocol))}"
    if isinstance(match, ir.AddressMatch):
        # felix passes the policy's CIDR string, which the calculation graph normalised to
        # address/prefix (ip.CIDR.String()), /32 included.
        net = IPv4Network((match.cidr.network, match.cidr.prefix_len))
        return f"ip {match.direction[0]}addr {ne}{net}"
    if isinstance(match, ir.InterfaceMatch):
        name = match.name[:-1] + "*" if match.name.endswith("+") else match.name
        return f"{_IFACE_KEY[match.direction]} {ne}{name}"
    if isinstance(match, ir.MarkMatch):
        value = "0" if match.value == 0 else hexmark(match.value)
        op = "!=" if match.negated else "=="
        return f"meta mark & {hexmark(match.mask)} {op} {value}"
    if isinstance(match, ir.ConntrackMatch):
        return _conntrack(match)
    if isinstance(match, ir.SetMatch):
        return _set_clause(match, set_types.get(match.set_name, "hash:net"))
    if isinstance(match, ir.PortMatch):
        return _ports(match, proto)
    if isinstance(match, ir.IcmpMatch):
        if match.icmp_code is None:
            return f"icmp type {ne}{match.icmp_type}"
        return f"icmp type {ne}{match.icmp_type} code {ne}{match.icmp_code}"
    if isinstance(match, ir.AddrTypeMatch):
        return _addr_type(match)
    if isinstance(match, ir.RpfilterMatch):
        return "fib saddr . mark . iif oif 0"          # RPFCheckFailed
    if isinstance(match, ir.LimitMatch):
        count, _, unit = match.rate.partition("/")
        rate = f"{count}/{_LIMIT_UNITS.get(unit, unit)}"
        return f"limit rate {rate}" + (f" burst {match.burst} packets" if match.burst else "")
    raise ValueError(f"felix's nftables backend has no rendering for {match!r}")


def _conntrack(match: ir.ConntrackMatch) -> str:
    ne = "!= " if match.negated else ""
    status = [_STATUS_STATES[s] for s in sorted(match.states) if s in _STATUS_STATES]
    if status:
        return f"ct status {ne}{','.join(status)}"
    states = sorted(match.states, key=lambda s: _STATE_ORDER.index(s)
                    if s in _STATE_ORDER else len(_STATE_ORDER))
    return f"ct state {ne}{','.join(s.lower() for s in states)}"


def _set_clause(match: ir.SetMatch, set_type: str) -> str:
    ne = "!= " if match.negated else ""
    direction = "s" if match.flags[0] == "src" else "d"
    if set_type == "hash:ip,port":
        return (f"ip {direction}addr . meta l4proto . th {direction}port {ne}"
                f"@{match.set_name}")
    return f"ip {direction}addr {ne}@{match.set_name}"


def _ports(match: ir.PortMatch, proto: int | None) -> str:
    """``tcp dport { 80, 8000-8080 }`` (DestPorts) or ``udp dport 4789`` (DestPort)."""
    ne = "!= " if match.negated else ""
    transport = PROTOCOL_NAMES.get(proto or 0, "th")
    direction = "sport" if match.direction == "src" else "dport"
    if not match.multiport:
        return f"{transport} {direction} {ne}{match.ranges[0][0]}"
    items = ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in match.ranges)
    return f"{transport} {direction} {ne}{{ {items} }}"


def _addr_type(match: ir.AddrTypeMatch) -> str:
    if match.src_type is not None:
        ne = "!= " if match.src_negated else ""
        key = "saddr . oif" if match.limit_iface == "out" else "saddr"
        return f"fib {key} type {ne}{match.src_type.lower()}"
    ne = "!= " if match.dst_negated else ""
    return f"fib daddr type {ne}{(match.dst_type or 'local').lower()}"


def action_text(target: ir.Target) -> str:
    """actions.go ToFragment."""
    if isinstance(target, ir.Verdict):
        return target.name.lower()
    if isinstance(target, ir.Jump):
        return f"jump {target.chain}"
    if isinstance(target, ir.Goto):
        return f"goto {target.chain}"
    if isinstance(target, ir.Reject):
        return "reject with tcp reset" if target.with_ == "tcp-reset" else "reject"
    if isinstance(target, ir.SetMark):
        if target.value == 0:                                   # ClearMarkAction
            return f"meta mark set mark & {hexmark(~target.mask & 0xFFFFFFFF)}"
        if target.value == target.mask:                         # SetMarkAction
            return f"meta mark set mark or {hexmark(target.value)}"
        return (f"meta mark set mark & {hexmark(~target.mask & 0xFFFFFFFF)} "
                f"^ {hexmark(target.value)}")                   # SetMaskedMarkAction
    if isinstance(target, ir.ConnMarkTarget):
        if target.mode == "set":
            return (f"ct mark set ct mark & {hexmark(~target.mask & 0xFFFFFFFF)} "
                    f"^ {hexmark(target.value)}")
        if target.mode == "save":
            return f"ct mark set mark & {hexmark(target.nfmask)}"
        return f"meta mark set ct mark & {hexmark(target.ctmask)}"
    if isinstance(target, ir.NoTrack):
        return "notrack"
    if isinstance(target, ir.Log):
        return f'log prefix "{target.prefix}" level info'
    if isinstance(target, ir.Nflog):
        size = target.size if target.size else 80
        return f'log prefix "{target.prefix}" snaplen {size} group {target.group}'
    if isinstance(target, ir.Masquerade):
        ports = f" to :{target.to_ports[0]}-{target.to_ports[1]}" if target.to_ports else ""
        return "masquerade" + ports + (" fully-random" if target.random_fully else "")
    if isinstance(target, ir.Snat):
        return f"snat to {target.to_source}" + (" fully-random" if target.random_fully else "")
    if isinstance(target, ir.Dnat):
        return f"dnat to {target.to_destination}"
    raise ValueError(f"felix's nftables backend has no rendering for {target!r}")


# ----------------------------------------------------------------------------- ruleset


def written_priority(base: BaseChain) -> str:
    """felix's priority keyword, or its number where nft refuses the keyword on that hook
    (felix's nat-INPUT is ``dstnat``, nat-OUTPUT ``srcnat+10``; nft 1.0 wants numbers)."""
    word = base.priority.partition("+")[0]
    hooks = _NAMED_PRIORITY_HOOKS.get(word)
    if hooks is not None and base.hook not in hooks:
        return str(base.priority_value)
    return base.priority


def format_nft(ruleset: NftRuleset) -> str:
    """The ruleset as ``nft -f`` input (the layout ``nft list ruleset`` prints)."""
    return "".join(format_table(t) for t in ruleset.tables)


def format_table(table: NftTable) -> str:
    lines = [f"table {table.family} {table.name} {{"]
    for nset in table.sets.values():
        lines.append(f"\tset {nset.name} {{")
        lines.append(f"\t\ttype {nset.type}")
        if nset.flags:
            lines.append(f"\t\tflags {','.join(nset.flags)}")
        if nset.elements:
            lines.append(f"\t\telements = {{ {', '.join(nset.elements)} }}")
        lines.append("\t}")
    for vmap in table.maps.values():
        lines.append(f"\tmap {vmap.name} {{")
        lines.append(f"\t\ttype {vmap.type}")
        if vmap.elements:
            items = ", ".join(f'"{key}" : {action_text(verdict)}'
                              for key, verdict in vmap.elements)
            lines.append(f"\t\telements = {{ {items} }}")
        lines.append("\t}")
    for chain in table.chains.values():
        lines.append(f"\tchain {chain.name} {{")
        if chain.base is not None:
            b = chain.base
            lines.append(f"\t\ttype {b.type} hook {b.hook} priority {written_priority(b)}; "
                         f"policy {b.policy};")
        for rule in chain.rules:
            comment = f' comment "{rule.comment}"' if rule.comment else ""
            lines.append(f"\t\t{rule.text}{comment}")
        lines.append("\t}")
    lines.append("}")
    return "\n".join(lines) + "\n"
