"""The kernel judge in nftables mode: the cluster realised in namespaces with each node's
felix table loaded by ``nft -f``, a real probe traced with ``meta nftrace set 1`` and
``nft monitor``, and the simulator's nftables trace of the same packet compared with it.

Both sides are normalised to :class:`tracer.kernel.compare.Step` with the rule's *handle* as
its key (the simulator names rules by the handle nft gives them on load, see
:func:`tracer.nft.walk.rule_handles`), so equal steps mean: same table, chain, rule, verdict
and jump target. The liberties are the iptables judge's (:mod:`tracer.kernel.compare`): our
trace table is not compared, implicit returns are dropped from both sides, and effects are
named as nftables prints verdicts (NAT statements and ``notrack`` as the verdicts they
return: accept, continue; ``reject`` as drop).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from tracer.dataplane.events import NetfilterEvent
from tracer.errors import InputError
from tracer.judge.topology import lab_plan
from tracer.judge.verify import (EXTERNAL, KERNEL_PROTOCOLS, Case, CaseResult, _end,
                                 simulator_events)
from tracer.kernel import nsexec
from tracer.kernel.compare import Comparison, Step, _first_disagreement
from tracer.kernel.probe import Probe, run_probe
from tracer.kernel.realise import KernelLab, missing_requirements
from tracer.kernel.xtrace import KernelEvent
from tracer.nft.ktrace import NftTraceMonitor, handle_of
from tracer.nft.plug import with_nftables
from tracer.nft.text import format_nft
from tracer.nft.translate import render_nft
from tracer.trace.tracing import TraceRequest, trace_packet

SIM_TO_NFT_VERDICT = {"REJECT": "DROP", "DNAT": "ACCEPT", "SNAT": "ACCEPT",
                      "MASQUERADE": "ACCEPT", "NOTRACK": "CONTINUE"}


def normalise_sim(events: Sequence[tuple[str, NetfilterEvent]]) -> list[Step]:
    steps = []
    for node, event in events:
        if event.kind == "return" and event.rule is None:
            continue
        verdict = SIM_TO_NFT_VERDICT.get(event.effect, event.effect)
        target = event.target_chain if event.effect in ("JUMP", "GOTO") else None
        text = getattr(event.rule, "listing", "") if event.rule is not None else ""
        steps.append(Step(node, event.table, event.chain, event.kind, event.rule_number,
                          verdict, target, text))
    return steps


def normalise_kernel(events: Sequence[KernelEvent]) -> list[Step]:
    steps = []
    for event in events:
        if event.kind == "return" and event.rule_text is None:
            continue
        target = event.target_chain if event.verdict in ("JUMP", "GOTO") else None
        steps.append(Step(event.node, event.table, event.chain, event.kind, handle_of(event),
                          event.verdict, target, event.rule_text or ""))
    return steps


def compare_nft(sim_events, kernel_events, sim_delivered: bool,
                kernel_delivered: bool) -> Comparison:
    sim, kernel = normalise_sim(sim_events), normalise_kernel(kernel_events)
    reason = _first_disagreement(sim, kernel, sim_delivered, kernel_delivered)
    return Comparison(agree=reason is None, reason=reason or "same events and delivery",
                      sim=tuple(sim), kernel=tuple(kernel), sim_delivered=sim_delivered,
                      kernel_delivered=kernel_delivered)


def run_nft_cases(dataplane, version: str, cases: list[Case], *, timeout: float = 0.5,
                  progress=None) -> list[CaseResult]:
    """Judge ``cases`` on ``dataplane`` (the iptables-mode one the lab's topology comes from)
    with felix's nftables table in every node namespace."""
    problem = missing_requirements()
    if problem is not None:
        raise InputError(f"the kernel judge {problem}", obj="verify")
    plan = lab_plan(dataplane)
    spec = replace(plan.spec, nodes=tuple(replace(n, iptables="", ipsets="")
                                          for n in plan.spec.nodes))
    nft_dataplane, _ = with_nftables(dataplane, version, "reference")
    results = []
    with KernelLab(spec) as lab:
        for node in spec.nodes:
            text = format_nft(render_nft(dataplane.cluster, node.name, version=version))
            try:
                nsexec.run(lab.netns_of_node(node.name), ["nft", "-f", "-"], input_text=text)
            except nsexec.CommandFailed as exc:
                raise InputError(f"kernel refused the nftables ruleset: {exc}",
                                 obj=node.name) from None
        for case in cases:
            result = _judge(nft_dataplane, plan, lab, case, timeout)
            results.append(result)
            if progress is not None:
                progress(result)
    return results


def _judge(dataplane, plan, lab: KernelLab, case: Case, timeout: float) -> CaseResult:
    if case.protocol not in KERNEL_PROTOCOLS:
        return CaseResult(case, None, None, f"the lab sends {', '.join(KERNEL_PROTOCOLS)} only")
    src, dst = _end(dataplane, plan, case.source), _end(dataplane, plan, case.destination)
    if src.kind == dst.kind == EXTERNAL:
        raise InputError(f"{case.describe()}: one end must be in the cluster", obj="verify")
    if case.source == case.destination:
        return CaseResult(case, None, None, "an end talking to itself never meets netfilter")
    nodes = {src.node or dst.node, dst.node or src.node}
    if len(nodes) > 1 and plan.crosses_missing_device(*nodes):
        return CaseResult(case, None, None, "needs " + "; ".join(plan.unbuildable[:1]))
    simulated = trace_packet(dataplane, TraceRequest(src.simulator, dst.simulator,
                                                     protocol=case.protocol, port=case.port))
    kernel = run_probe(lab, Probe(src.kernel, dst.ip, case.protocol, dport=case.port,
                                  timeout=timeout), monitor=NftTraceMonitor)
    comparison = compare_nft(simulator_events(simulated), kernel.events,
                             simulated.verdict == "allowed", kernel.delivered)
    return CaseResult(case, simulated, comparison)
