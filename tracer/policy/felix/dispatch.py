"""Interface-name dispatch chains (felix/rules/dispatch.go): a one-level prefix tree keyed on
the first character after the names' common prefix, ending in a drop for workloads
("Unknown interface") and in a fall-through (or the ``*`` host endpoint) for host endpoints.
"""

from __future__ import annotations

import os
from typing import Callable

from tracer.dataplane.ir import Provenance
from tracer.policy.felix import builder as b
from tracer.policy.felix.builder import M, FChain, FRule
from tracer.policy.felix.context import Ctx
from tracer.policy.felix.names import endpoint_chain_name

SOURCE = "rules/dispatch.go"
_PROV = Provenance(role="dispatch", source=SOURCE)


def prefix_tree(names: list[str]) -> tuple[str, list[str], dict[str, list[str]]]:
    """sortAndDivideEndpointNamesToPrefixTree: common prefix, bins by the next character."""
    names = sorted(names)
    common = os.path.commonprefix(names) if names else ""
    prefixes: list[str] = []
    bins: dict[str, list[str]] = {}
    last = None
    for name in names:
        if name == last:
            continue            # felix logs "Multiple endpoints with same interface name"
        prefix = name[: len(common) + 1] if len(name) > len(common) else common
        if prefix not in bins:
            prefixes.append(prefix)
            bins[prefix] = []
        bins[prefix].append(name)
        last = name
    return common, prefixes, bins


def dispatch_tree(root: str, names: list[str], endpoint_prefix: str,
                  match: Callable[[str], M], end_rules: tuple[FRule, ...]) -> list[FChain]:
    """buildSingleDispatchChainTree: child chains first, then the root chain."""
    common, prefixes, bins = prefix_tree(names)
    children, root_rules = [], []
    for prefix in prefixes:
        members = bins[prefix]
        if len(members) > 1:
            child = f"{root}-{prefix[len(common):]}"
            root_rules.append(FRule(match(prefix + "+"), b.goto(child), (), _PROV))
            rules = [FRule(match(n), b.goto(endpoint_chain_name(endpoint_prefix, n)), (), _PROV)
                     for n in members]
            children.append(FChain(child, tuple(rules) + end_rules))
        else:
            name = members[0]
            root_rules.append(FRule(match(name),
                                    b.goto(endpoint_chain_name(endpoint_prefix, name)), (), _PROV))
    return children + [FChain(root, tuple(root_rules) + end_rules)]


def _in(name: str) -> M:
    return M().in_iface(name)


def _out(name: str) -> M:
    return M().out_iface(name)


def workload_dispatch_chains(ctx: Ctx, ifaces: list[str]) -> list[FChain]:
    """WorkloadDispatchChains: from-wl and to-wl trees ending in "Unknown interface" drops."""
    end = (FRule(M(), ctx.deny, ("Unknown interface",),
                 Provenance(role="unknown-interface", source=SOURCE)),)
    return (dispatch_tree("cali-from-wl-dispatch", ifaces, "cali-fw-", _in, end)
            + dispatch_tree("cali-to-wl-dispatch", ifaces, "cali-tw-", _out, end))


def host_dispatch_chains(ctx: Ctx, ifaces: list[str], default_iface: str, directions: str,
                         apply_on_forward: bool) -> list[FChain]:
    """hostDispatchChains for "to+from", "from" or "to"; unknown interfaces fall through."""
    from_end: tuple[FRule, ...] = ()
    to_end: tuple[FRule, ...] = ()
    from_fwd_end: tuple[FRule, ...] = ()
    to_fwd_end: tuple[FRule, ...] = ()
    if default_iface:
        from_end = (FRule(M(), b.goto(endpoint_chain_name("cali-fh-", default_iface)), (), _PROV),)
        from_fwd_end = (FRule(M(), b.goto(endpoint_chain_name("cali-fhfw-", default_iface)),
                              (), _PROV),)
        if not apply_on_forward:
            to_end = tuple(FRule(M().out_iface(p + "+"), b.RETURN,
                                 ("Skip egress WHEP policy for traffic to local workload",), _PROV)
                           for p in ctx.prefixes)
        to_end += (FRule(M(), b.goto(endpoint_chain_name("cali-th-", default_iface)), (), _PROV),)
        to_fwd_end = (FRule(M(), b.goto(endpoint_chain_name("cali-thfw-", default_iface)),
                            (), _PROV),)
    chains: list[FChain] = []
    if directions in ("from", "to+from"):
        chains += dispatch_tree("cali-from-host-endpoint", ifaces, "cali-fh-", _in, from_end)
    if directions in ("to", "to+from"):
        chains += dispatch_tree("cali-to-host-endpoint", ifaces, "cali-th-", _out, to_end)
    if directions == "to+from" and apply_on_forward:
        chains += dispatch_tree("cali-from-hep-forward", ifaces, "cali-fhfw-", _in, from_fwd_end)
        chains += dispatch_tree("cali-to-hep-forward", ifaces, "cali-thfw-", _out, to_fwd_end)
    return chains
