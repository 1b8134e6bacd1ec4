"""Turn a raw trace into an answer: the deciding rules, the Calico objects behind them, a
plain-language *why* and a fix hint.

The dataplane decides; the policy evaluator (``tracer.policy.evaluate``) only explains. When
the two disagree, that is a bug in one of them, and the explanation says so instead of hiding it.
"""

from __future__ import annotations

from dataclasses import replace

from tracer.explain.deciding import deciding_decisions, endpoint_chains
from tracer.explain.why import compose
from tracer.trace.result import PacketTrace


def explain(dataplane, trace: PacketTrace) -> PacketTrace:
    """``trace`` with its deciding rules, why, fix hint and staged-policy notes filled in."""
    decisions = deciding_decisions(dataplane, trace)
    chains = endpoint_chains(dataplane, trace)
    why, hint, staged, selected_by = compose(dataplane, trace, decisions, chains)
    return replace(trace, deciding=decisions, why=why, hint=hint, staged=staged,
                   selected_by=selected_by)
