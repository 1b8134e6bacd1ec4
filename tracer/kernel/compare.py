"""Compare the simulator's netfilter events with the kernel's trace of the same probe.

Both sides are normalised to :class:`Step` = (node, table, chain, kind, rule_key, verdict)
and compared node by node, in order. ``rule_key`` is the rule as a typed IR
:class:`~tracer.dataplane.ir.Rule`: the kernel's rule text goes through
``iptables_save.parse_rule`` and both sides through ``normalise_rule``, so two rules agree
when they mean the same thing however they are spelled (``--set-mark`` vs ``--set-xmark``,
felix's match order vs iptables-nft's). Provenance never takes part in equality.

The only liberties taken, each a real difference of representation and nothing more:

1. The probe's own TRACE rule (tagged ``ctk-trace…``) is dropped from the kernel side: it is
   our instrument, not part of the ruleset under test (see :mod:`tracer.kernel.xtrace`).
2. Implicit returns (a user chain running off its end, ``kind == "return"`` without a rule)
   are dropped from both sides. Linux 6.x reports none (checked on 6.18: the next event is
   simply the caller's next rule), older kernels printed them; they carry no rule and are
   implied by the following event's chain, so no matched rule or verdict is hidden.
   Explicit ``-j RETURN`` rules are kept on both sides.
3. Effect names are mapped to what the kernel can print (``SIM_TO_KERNEL_VERDICT``):
   REJECT → DROP (the xt REJECT target sends its ICMP/RST and returns NF_DROP; observed),
   DNAT/SNAT/MASQUERADE → ACCEPT (xt NAT targets return NF_ACCEPT), NOTRACK → CONTINUE (the
   CT/NOTRACK target returns XT_CONTINUE, so evaluation goes on; observed). Everything else
   (CONTINUE, JUMP, GOTO, RETURN, ACCEPT, DROP, policy verdicts) must match exactly, and so
   must the jump/goto target chain.
4. Nodes are compared one by one: each node's xtables-monitor is independent and the
   kernel gives no order across nodes, so the node order shown follows the simulator.
"""

from __future__ import annotations

import difflib
import io
from collections.abc import Sequence
from dataclasses import dataclass

from rich import box
from rich.console import Console
from rich.table import Table

from tracer.dataplane.events import NetfilterEvent
from tracer.dataplane.iptables_save import format_rule, normalise_rule, parse_rule
from tracer.dataplane.ir import Rule
from tracer.errors import InputError
from tracer.kernel.xtrace import KernelEvent

SIM_TO_KERNEL_VERDICT = {"REJECT": "DROP", "DNAT": "ACCEPT", "SNAT": "ACCEPT",
                         "MASQUERADE": "ACCEPT", "NOTRACK": "CONTINUE"}


@dataclass(frozen=True)
class Unparsed:
    """A kernel rule text the parser could not read: it never equals a simulator rule."""

    text: str
    problem: str


@dataclass(frozen=True)
class Step:
    """One normalised event. ``text`` is for display only and is not compared."""

    node: str
    table: str
    chain: str
    kind: str
    rule_key: Rule | Unparsed | None
    verdict: str
    target_chain: str | None = None
    text: str = ""

    @property
    def key(self) -> tuple:
        return (self.node, self.table, self.chain, self.kind, self.rule_key, self.verdict,
                self.target_chain)

    def label(self) -> str:
        verdict = self.verdict + (f":{self.target_chain}" if self.target_chain else "")
        head = f"{self.table}:{self.chain} {self.kind} {verdict}"
        return f"{head}  {self.text}" if self.text else head


# -- normalisation ------------------------------------------------------------------------


def _rule_body(text: str) -> str:
    """``-4 -t filter -A FORWARD -o x -j y`` → ``-o x -j y`` (for display)."""
    words = text.split()
    if "-A" in words:
        words = words[words.index("-A") + 2:]
    return " ".join(words)


def normalise_sim(events: Sequence[tuple[str, NetfilterEvent]]) -> list[Step]:
    steps = []
    for node, event in events:
        if event.kind == "return" and event.rule is None:
            continue                                   # liberty 2
        rule_key = normalise_rule(event.rule) if event.rule is not None else None
        text = _rule_body(format_rule(event.chain, event.rule)) if event.rule else ""
        verdict = SIM_TO_KERNEL_VERDICT.get(event.effect, event.effect)
        target = event.target_chain if event.effect in ("JUMP", "GOTO") else None
        steps.append(Step(node, event.table, event.chain, event.kind, rule_key, verdict,
                          target, text))
    return steps


def normalise_kernel(events: Sequence[KernelEvent]) -> list[Step]:
    steps = []
    for event in events:
        if event.is_probe_trace_rule:                  # liberty 1
            continue
        if event.kind == "return" and event.rule_text is None:
            continue                                   # liberty 2
        rule_key = _parse_kernel_rule(event) if event.rule_text else None
        target = event.target_chain if event.verdict in ("JUMP", "GOTO") else None
        steps.append(Step(event.node, event.table, event.chain, event.kind, rule_key,
                          event.verdict, target, _rule_body(event.rule_text or "")))
    return steps


def _parse_kernel_rule(event: KernelEvent) -> Rule | Unparsed:
    assert event.rule_text is not None
    try:
        chain, rule = parse_rule(event.rule_text, filename="kernel trace")
    except InputError as err:
        return Unparsed(event.rule_text, err.problem)
    if chain != event.chain:
        return Unparsed(event.rule_text, f"rule text names chain {chain}, trace {event.chain}")
    return normalise_rule(rule)


# -- comparison ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """The verdict of the judge: ``agree`` plus both normalised sides for display."""

    agree: bool
    reason: str
    sim: tuple[Step, ...]
    kernel: tuple[Step, ...]
    sim_delivered: bool
    kernel_delivered: bool

    def nodes(self) -> list[str]:
        order = [s.node for s in self.sim] + [k.node for k in self.kernel]
        return list(dict.fromkeys(order))

    def render(self, width: int = 160) -> str:
        """A side-by-side diff, simulator left, kernel right, per node, as plain text of at
        most ``width`` columns.

        Markers: ``=`` same event, ``!`` differing, ``<`` simulator only, ``>`` kernel only.
        """
        table = Table(box=box.MINIMAL, show_edge=False, pad_edge=False, padding=(0, 1),
                      header_style="")
        table.add_column("  simulator", no_wrap=True, overflow="ellipsis", ratio=1)
        table.add_column("kernel", no_wrap=True, overflow="ellipsis", ratio=1)
        for node in self.nodes():
            left = [s for s in self.sim if s.node == node]
            right = [k for k in self.kernel if k.node == node]
            table.add_row(f"-- node {node}", "", style="bold")
            for mark, sim, ker in _side_by_side(left, right):
                table.add_row(f"{mark} {sim}", ker)
        console = Console(width=width, color_system=None, file=io.StringIO(), highlight=False)
        console.print(f"{'AGREE' if self.agree else 'DISAGREE'}: {self.reason}", soft_wrap=True)
        console.print(f"delivered: simulator={_yes(self.sim_delivered)} "
                      f"kernel={_yes(self.kernel_delivered)}")
        console.print(table)
        return "\n".join(line.rstrip() for line in console.file.getvalue().splitlines())


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _side_by_side(left: list[Step], right: list[Step]) -> list[tuple[str, str, str]]:
    """(marker, simulator label, kernel label) rows aligned by a diff of the event keys."""
    out = []
    matcher = difflib.SequenceMatcher(a=[s.key for s in left], b=[s.key for s in right],
                                      autojunk=False)
    for op, a0, a1, b0, b1 in matcher.get_opcodes():
        if op == "equal":
            out += [("=", left[i].label(), right[j].label())
                    for i, j in zip(range(a0, a1), range(b0, b1))]
            continue
        for offset in range(max(a1 - a0, b1 - b0)):
            sim = left[a0 + offset].label() if a0 + offset < a1 else ""
            ker = right[b0 + offset].label() if b0 + offset < b1 else ""
            out.append(("!" if sim and ker else ("<" if sim else ">"), sim, ker))
    return out


def compare(sim_events: Sequence[tuple[str, NetfilterEvent]], kernel_events: Sequence[KernelEvent],
            sim_delivered: bool, kernel_delivered: bool) -> Comparison:
    """Judge the simulator against the kernel for one probe packet."""
    sim = normalise_sim(sim_events)
    kernel = normalise_kernel(kernel_events)
    reason = _first_disagreement(sim, kernel, sim_delivered, kernel_delivered)
    return Comparison(agree=reason is None, reason=reason or "same events and delivery",
                      sim=tuple(sim), kernel=tuple(kernel), sim_delivered=sim_delivered,
                      kernel_delivered=kernel_delivered)


def _first_disagreement(sim: list[Step], kernel: list[Step], sim_delivered: bool,
                        kernel_delivered: bool) -> str | None:
    nodes = list(dict.fromkeys([s.node for s in sim] + [k.node for k in kernel]))
    for node in nodes:
        left = [s for s in sim if s.node == node]
        right = [k for k in kernel if k.node == node]
        for index, (a, b) in enumerate(zip(left, right)):
            if a.key != b.key:
                return f"node {node} event {index + 1}: {_difference(a, b)}"
        if len(left) != len(right):
            longer, who = (left, "simulator") if len(left) > len(right) else (right, "kernel")
            extra = longer[min(len(left), len(right))]
            return (f"node {node}: only the {who} has event {min(len(left), len(right)) + 1} "
                    f"({extra.label()[:80]})")
    if sim_delivered != kernel_delivered:
        return (f"delivery differs: simulator {'delivers' if sim_delivered else 'drops'}, "
                f"kernel {'delivers' if kernel_delivered else 'drops'}")
    return None


def _difference(a: Step, b: Step) -> str:
    for field_name in ("table", "chain", "kind", "verdict", "target_chain"):
        if getattr(a, field_name) != getattr(b, field_name):
            return (f"{field_name} simulator={getattr(a, field_name)} "
                    f"kernel={getattr(b, field_name)}")
    if isinstance(b.rule_key, Unparsed):
        return f"kernel rule not parsed ({b.rule_key.problem}): {b.rule_key.text}"
    return f"rule differs in {a.table}:{a.chain}: simulator `{a.text}` kernel `{b.text}`"
