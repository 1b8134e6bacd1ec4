"""A finished trace: the hops the pipeline recorded, the verdict, and (once explained) the
rules that decided it, mapped back to Calico objects."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from tracer.dataplane.events import NetfilterEvent
from tracer.dataplane.ir import Provenance, Rule
from tracer.dataplane.packet import Packet
from tracer.dataplane.reasons import DropReason
from tracer.dataplane.trace import DropRecord, HookRecord, Hop
from tracer.model.places import Place


@dataclass(frozen=True)
class Decision:
    """The iptables rule that decided, mapped back to the Calico object behind it."""

    node: str
    table: str
    chain: str
    rule_number: int | None
    rule: Rule | None
    rule_text: str | None
    effect: str
    provenance: Provenance | None


@dataclass(frozen=True)
class PacketTrace:
    packet: Packet
    src: Place
    dst: Place
    assumptions: tuple[str, ...]
    hops: tuple[Hop, ...]
    verdict: Literal["allowed", "dropped"]
    reason: DropReason | None
    deciding: tuple[Decision, ...] = ()  # drop: the dropping rule; allow: the accepting rules
    why: str = ""
    hint: str = ""
    delivered_to: str | None = None
    staged: tuple[str, ...] = ()       # "would have ..." lines from staged policies
    selected_by: dict[str, tuple[str, ...]] = field(default_factory=dict, hash=False)

    @property
    def source(self) -> str:
        return self.src.label

    @property
    def destination(self) -> str:
        return self.dst.label

    @property
    def drop(self) -> DropRecord | None:
        """The record that ended the trace, when it was a drop."""
        stages = self.hops[-1].stages if self.hops else ()
        return stages[-1] if stages and isinstance(stages[-1], DropRecord) else None

    def netfilter_events(self) -> list[tuple[str, NetfilterEvent]]:
        """Every netfilter event in order with its node: what the kernel judge compares."""
        return [(hop.node, event) for hop in self.hops for stage in hop.stages
                if isinstance(stage, HookRecord) for event in stage.events]
