"""Pin kube-proxy's random backend choice: an ``Environment.statistic`` that makes exactly the
chosen KUBE-SVC rule fire, as if every ``-m statistic --mode random`` draw before it had missed
and its own had hit.

The decision is keyed by the identity of each dispatch rule's statistic match in every node's
KUBE-SVC chain for the Service port (the interpreter hands the environment the very match
object of the rule it evaluates). A dispatch rule fires iff it jumps to the chosen backend's
KUBE-SEP chain, so the pin also holds for a dump whose endpoint order differs from ours.
Statistic matches elsewhere keep the node environment's own answer.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from tracer.dataplane.ir import Jump, Ruleset, StatisticMatch, Table
from tracer.kubeproxy.probe import ServiceTarget


class PinnedEnvironment:
    """A node environment whose statistic answers are fixed for some matches."""

    def __init__(self, base, decisions: dict[int, bool]):
        self.base = base
        self.decisions = decisions

    def statistic(self, match, packet) -> bool:
        decided = self.decisions.get(id(match))
        return self.base.statistic(match, packet) if decided is None else decided

    def __getattr__(self, name: str):
        return getattr(self.base, name)


def statistic_decisions(ruleset: Ruleset, target: ServiceTarget, index: int) -> dict[int, bool]:
    """id(statistic match) -> fires?, for the Service port's KUBE-SVC chain in ``ruleset``."""
    chain = ruleset.tables.get(Table.NAT, {}).get(target.svc_chain)
    if chain is None:
        return {}
    chosen = target.sep_chain(index)
    decisions: dict[int, bool] = {}
    for rule in chain.rules:
        if not isinstance(rule.target, Jump):
            continue
        for match in rule.matches:
            if isinstance(match, StatisticMatch):
                # The draw "hits" (before any "!") exactly for the chosen backend's rule.
                decisions[id(match)] = (rule.target.chain == chosen) ^ match.negated
    return decisions


@contextmanager
def pinned(dataplane, target: ServiceTarget, index: int) -> Iterator[None]:
    """Within the block every node of ``dataplane`` sends the Service port's new connections
    to backend ``index`` (0-based, kube-proxy's order); the environments are restored after."""
    saved = {name: node.environment for name, node in dataplane.nodes.items()}
    try:
        for name, node in dataplane.nodes.items():
            node.environment = PinnedEnvironment(
                saved[name], statistic_decisions(node.ruleset, target, index))
        yield
    finally:
        for name, env in saved.items():
            dataplane.nodes[name].environment = env
