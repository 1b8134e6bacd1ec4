"""Calico rules as felix's calculation graph hands them to the renderer (``ParsedRule``).

Selectors become ipset IDs and named ports become ``hash:ip,port`` set IDs, following
felix/calc/rule_scanner.go (ruleToParsedRule, extractSelectors, combineMatchesIfPossible).
"""

from __future__ import annotations

from dataclasses import dataclass

from tracer.model.cluster import PortSpec, Rule
from tracer.selector.selector import ALL, Selector, make_unique_id, parse_selector

Ranges = tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class SetSpec:
    """IPSetData: a selector set, or a named-port set filtered by a selector."""

    selector: Selector
    named_port: str | None = None
    port_protocol: str | None = None      # "tcp" / "udp" / "sctp" / "any"

    @property
    def set_id(self) -> str:
        if self.named_port is None:
            return self.selector.unique_id
        return make_unique_id("n", f"{self.selector.unique_id},{self.port_protocol},"
                                   f"{self.named_port}")

    @property
    def set_type(self) -> str:
        return "hash:net" if self.named_port is None else "hash:ip,port"


@dataclass(frozen=True)
class ParsedRule:
    action: str                           # allow / deny / pass / log
    ip_version: int | None = None
    protocol: str | int | None = None
    not_protocol: str | int | None = None
    src_nets: tuple[str, ...] = ()
    not_src_nets: tuple[str, ...] = ()
    dst_nets: tuple[str, ...] = ()
    not_dst_nets: tuple[str, ...] = ()
    src_ports: Ranges = ()
    dst_ports: Ranges = ()
    not_src_ports: Ranges = ()
    not_dst_ports: Ranges = ()
    src_sets: tuple[SetSpec, ...] = ()
    dst_sets: tuple[SetSpec, ...] = ()
    not_src_sets: tuple[SetSpec, ...] = ()
    not_dst_sets: tuple[SetSpec, ...] = ()
    src_named: tuple[SetSpec, ...] = ()
    dst_named: tuple[SetSpec, ...] = ()
    not_src_named: tuple[SetSpec, ...] = ()
    not_dst_named: tuple[SetSpec, ...] = ()
    icmp: tuple[int, int | None] | None = None
    not_icmp: tuple[int, int | None] | None = None
    annotations: tuple[tuple[str, str], ...] = ()

    def all_sets(self) -> list[SetSpec]:
        return [*self.src_named, *self.dst_named, *self.not_src_named, *self.not_dst_named,
                *self.src_sets, *self.dst_sets, *self.not_src_sets, *self.not_dst_sets]


def felix_protocol(value: str | int | None) -> str | int | None:
    """convertV3ProtocolToV1: names are lower-cased, numbers stay numbers."""
    if value is None or value == "":
        return None
    if isinstance(value, int) or str(value).isdigit():
        return int(value)
    return str(value).lower()


def named_port_protocol(protocol: str | int | None) -> str:
    """ipsetmember.ProtocolFrom; no rule protocol means "any"."""
    if protocol is None:
        return "any"
    if protocol in ("udp", 17):
        return "udp"
    if protocol in ("sctp", 132):
        return "sctp"
    return "tcp"


def _combine(positive: str, negative: str) -> tuple[str, str]:
    """combineMatchesIfPossible: fold the negated selector into a positive one."""
    if positive and negative:
        return f"({positive}) && (!({negative}))", ""
    return positive, negative


def _split_ports(ports: tuple[PortSpec, ...]) -> tuple[Ranges, tuple[str, ...]]:
    numeric = tuple((p.first, p.last if p.last is not None else p.first)
                    for p in ports if not p.is_named and p.first is not None)
    named = tuple(p.name for p in ports if p.is_named)
    return numeric, named


def parse_rule(rule: Rule) -> ParsedRule:
    """ruleToParsedRule for one backend-form Calico rule."""
    proto = felix_protocol(rule.protocol)
    np_proto = named_port_protocol(proto)
    # The model's EntityRule.selector is already the backend selector (GetEntityRuleSelector
    # folded in the namespace and service-account terms), so only the rule scanner's step
    # is left here.
    src_text, not_src_text = _combine(rule.source.selector or "", rule.source.not_selector or "")
    dst_text, not_dst_text = _combine(rule.destination.selector or "",
                                      rule.destination.not_selector or "")
    src_sel = parse_selector(src_text) if src_text else None
    dst_sel = parse_selector(dst_text) if dst_text else None

    src_num, src_named = _split_ports(rule.source.ports)
    dst_num, dst_named = _split_ports(rule.destination.ports)
    nsrc_num, nsrc_named = _split_ports(rule.source.not_ports)
    ndst_num, ndst_named = _split_ports(rule.destination.not_ports)

    def named(names: tuple[str, ...], sel: Selector | None) -> tuple[SetSpec, ...]:
        return tuple(SetSpec(sel or ALL, name, np_proto) for name in names)

    # The plain selector set is dropped when named-port sets (already filtered by it) cover it.
    src_sets = (SetSpec(src_sel),) if src_sel and (src_num or not src_named) else ()
    dst_sets = (SetSpec(dst_sel),) if dst_sel and (dst_num or not dst_named) else ()
    return ParsedRule(
        action=rule.action.lower(), ip_version=rule.ip_version, protocol=proto,
        not_protocol=felix_protocol(rule.not_protocol),
        src_nets=tuple(str(n) for n in rule.source.nets),
        not_src_nets=tuple(str(n) for n in rule.source.not_nets),
        dst_nets=tuple(str(n) for n in rule.destination.nets),
        not_dst_nets=tuple(str(n) for n in rule.destination.not_nets),
        src_ports=src_num, dst_ports=dst_num, not_src_ports=nsrc_num, not_dst_ports=ndst_num,
        src_sets=src_sets, dst_sets=dst_sets,
        not_src_sets=(SetSpec(parse_selector(not_src_text)),) if not_src_text else (),
        not_dst_sets=(SetSpec(parse_selector(not_dst_text)),) if not_dst_text else (),
        src_named=named(src_named, src_sel), dst_named=named(dst_named, dst_sel),
        not_src_named=named(nsrc_named, src_sel), not_dst_named=named(ndst_named, dst_sel),
        icmp=(rule.icmp.type, rule.icmp.code) if rule.icmp and rule.icmp.type is not None
        else None,
        not_icmp=(rule.not_icmp.type, rule.not_icmp.code)
        if rule.not_icmp and rule.not_icmp.type is not None else None,
        annotations=tuple(rule.annotations),
    )
