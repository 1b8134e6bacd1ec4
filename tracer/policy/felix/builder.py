"""Rules as felix builds them: every match and action carries both its typed IR form and the
exact text fragment felix renders (felix/iptables/match_builder.go, actions.go).

The text matters because felix's ``cali:<id>`` rule IDs hash the rendered rule, so the
fragments below must be byte-for-byte what felix writes (``--jump``, ``%#x`` marks, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from tracer.dataplane import ir
from tracer.dataplane.codecs.matches import LIMIT_DEFAULT_BURST, limit_rate
from tracer.protocols import protocol_number



def hexmark(value: int) -> str:
    """Go's ``%#x``: 0 prints as ``0x0``."""
    return f"{value:#x}"


@dataclass(frozen=True)
class Match:
    """An immutable list of (felix fragment, IR match) pairs; methods return extended copies."""

    parts: tuple[tuple[str, ir.Match], ...] = ()

    def _add(self, text: str, match: ir.Match) -> "Match":
        return Match(self.parts + ((text, match),))

    def __add__(self, other: "Match") -> "Match":
        return Match(self.parts + other.parts)

    @property
    def text(self) -> str:
        return " ".join(text for text, _ in self.parts)

    @property
    def ir(self) -> tuple[ir.Match, ...]:
        return tuple(match for _, match in self.parts)

    # -- marks
    def mark_clear(self, mark: int) -> "Match":
        return self._add(f"-m mark --mark 0/{hexmark(mark)}", ir.MarkMatch(0, mark))

    def mark_not_clear(self, mark: int) -> "Match":
        return self._add(f"-m mark ! --mark 0/{hexmark(mark)}", ir.MarkMatch(0, mark, True))

    def mark_set(self, mark: int) -> "Match":
        return self.mark_with_mask(mark, mark)

    def mark_with_mask(self, mark: int, mask: int) -> "Match":
        return self._add(f"-m mark --mark {hexmark(mark)}/{hexmark(mask)}",
                         ir.MarkMatch(mark, mask))

    def not_mark_with_mask(self, mark: int, mask: int) -> "Match":
        return self._add(f"-m mark ! --mark {hexmark(mark)}/{hexmark(mask)}",
                         ir.MarkMatch(mark, mask, True))

    # -- interfaces, conntrack, addrtype, rpf
    def in_iface(self, name: str) -> "Match":
        return self._add(f"--in-interface {name}", ir.InterfaceMatch("in", name))

    def out_iface(self, name: str) -> "Match":
        return self._add(f"--out-interface {name}", ir.InterfaceMatch("out", name))

    def ct_state(self, states: str, negated: bool = False) -> "Match":
        bang = "! " if negated else ""
        return self._add(f"-m conntrack {bang}--ctstate {states}",
                         ir.ConntrackMatch(frozenset(states.split(",")), negated))

    def rpf_failed(self) -> "Match":
        return self._add("-m rpfilter --invert --validmark",
                         ir.RpfilterMatch(invert=True, validmark=True))

    def src_addr_type(self, negated: bool = False, limit_out: bool = False) -> "Match":
        text = "-m addrtype " + ("! " if negated else "") + "--src-type LOCAL"
        text += " --limit-iface-out" if limit_out else ""
        return self._add(text, ir.AddrTypeMatch(src_type="LOCAL", src_negated=negated,
                                                limit_iface="out" if limit_out else None))

    def dst_addr_type(self) -> "Match":
        return self._add("-m addrtype --dst-type LOCAL", ir.AddrTypeMatch(dst_type="LOCAL"))

    # -- protocol, addresses, sets
    def protocol(self, proto: str | int, negated: bool = False) -> "Match":
        """``-p tcp`` for names, ``-p 4`` for numbers (ProtocolNum)."""
        number = protocol_number(proto)
        bang = "! " if negated else ""
        return self._add(f"{bang}-p {proto}", ir.ProtocolMatch(number, negated))

    def net(self, direction: str, cidr: str, negated: bool = False) -> "Match":
        flag = "--source" if direction == "src" else "--destination"
        bang = "! " if negated else ""
        return self._add(f"{bang}{flag} {cidr}",
                         ir.AddressMatch(direction, ir.Cidr.parse(cidr), negated))

    def ipset(self, name: str, flags: str, negated: bool = False) -> "Match":
        bang = "! " if negated else ""
        return self._add(f"-m set {bang}--match-set {name} {flags}",
                         ir.SetMatch(name, tuple(flags.split(",")), negated))

    # -- ports, icmp, limit
    def ports(self, direction: str, ranges: tuple[tuple[int, int], ...],
              negated: bool = False) -> "Match":
        flag = "--source-ports" if direction == "src" else "--destination-ports"
        bang = "! " if negated else ""
        text = ",".join(str(a) if a == b else f"{a}:{b}" for a, b in ranges)
        return self._add(f"-m multiport {bang}{flag} {text}",
                         ir.PortMatch(direction, tuple(ranges), negated))

    def dport(self, port: int) -> "Match":
        """``--dport N`` after ``-p udp`` (felix's DestPort, used for the VXLAN NOTRACK)."""
        return self._add(f"--dport {port}", ir.PortMatch("dst", ((port, port),), multiport=False))

    def icmp(self, icmp_type: int, code: int | None, negated: bool = False) -> "Match":
        bang = "! " if negated else ""
        text = f"{icmp_type}" if code is None else f"{icmp_type}/{code}"
        return self._add(f"-m icmp {bang}--icmp-type {text}",
                         ir.IcmpMatch(icmp_type, code, negated))

    def limit(self, rate: str, burst: int) -> "Match":
        """felix writes the rate as configured; the kernel holds it (and iptables-save prints
        it) normalised, the default burst 5 (also what no --limit-burst means) left out."""
        text = f"-m limit --limit {rate}" + (f" --limit-burst {burst}" if burst else "")
        kept = None if burst in (0, LIMIT_DEFAULT_BURST) else burst
        return self._add(text, ir.LimitMatch(limit_rate(rate), kept))


M = Match  # short alias for builders


@dataclass(frozen=True)
class Action:
    """A felix action: its rendered fragment and its IR target."""

    text: str
    target: ir.Target

    @property
    def is_return(self) -> bool:
        return self.target == ir.Verdict("RETURN")


ACCEPT = Action("--jump ACCEPT", ir.Verdict("ACCEPT"))
DROP = Action("--jump DROP", ir.Verdict("DROP"))
RETURN = Action("--jump RETURN", ir.Verdict("RETURN"))
REJECT = Action("--jump REJECT", ir.Reject())
NOTRACK = Action("--jump NOTRACK", ir.NoTrack())


def jump(chain: str) -> Action:
    return Action(f"--jump {chain}", ir.Jump(chain))


def goto(chain: str) -> Action:
    return Action(f"--goto {chain}", ir.Goto(chain))


def set_mark(mark: int) -> Action:
    """SetMarkAction: ``--set-mark m/m``."""
    return set_masked_mark(mark, mark)


def set_masked_mark(mark: int, mask: int) -> Action:
    return Action(f"--jump MARK --set-mark {hexmark(mark)}/{hexmark(mask)}",
                  ir.SetMark(mark, mask))


def clear_mark(mask: int) -> Action:
    """ClearMarkAction prints a literal ``0`` (not ``0x0``)."""
    return Action(f"--jump MARK --set-mark 0/{hexmark(mask)}", ir.SetMark(0, mask))


def masquerade(random_fully: bool, to_ports: tuple[int, int] | None = None) -> Action:
    # felix adds --random-fully when the feature detector finds iptables >= 1.6.2 and
    # kernel >= 3.14 (environment/feature_detect.go), i.e. on any supported host.
    suffix = " --random-fully" if random_fully else ""
    ports = f" --to-ports {to_ports[0]}-{to_ports[1]}" if to_ports else ""
    return Action("--jump MASQUERADE" + ports + suffix,
                  ir.Masquerade(to_ports=to_ports, random_fully=random_fully))


def snat(to_source: str, random_fully: bool) -> Action:
    """SNATAction: ``--to-source ADDR[:PORTS]`` (fully random on the same hosts as MASQUERADE)."""
    suffix = " --random-fully" if random_fully else ""
    return Action(f"--jump SNAT --to-source {to_source}{suffix}",
                  ir.Snat(to_source, random_fully=random_fully))


def log(prefix: str) -> Action:
    return Action(f'--jump LOG --log-prefix "{prefix}: " --log-level 5',
                  ir.Log(prefix=f"{prefix}: ", level=5))


@dataclass(frozen=True)
class FRule:
    """generictables.Rule plus provenance: a match, an optional action and its comments."""

    match: Match = field(default_factory=Match)
    action: Action | None = None
    comments: tuple[str, ...] = ()
    provenance: ir.Provenance | None = None

    def with_comments(self, *extra: str) -> "FRule":
        return replace(self, comments=self.comments + tuple(extra))

    def with_provenance(self, prov: ir.Provenance) -> "FRule":
        return replace(self, provenance=prov)


@dataclass(frozen=True)
class FChain:
    name: str
    rules: tuple[FRule, ...] = ()

    def referenced_chains(self) -> list[str]:
        out = []
        for rule in self.rules:
            target = rule.action.target if rule.action else None
            if isinstance(target, (ir.Jump, ir.Goto)):
                out.append(target.chain)
        return out
