"""felix and kube-proxy in one node's tables, in the order a node shows once both run.

Who ends up where in a shared kernel chain (``FORWARD``, nat ``PREROUTING`` ...):

- kube-proxy ``EnsureRule(Prepend)``s each jump only when ``iptables -C`` does not find it, so
  it never moves a rule it already wrote (proxier.go, ``iptablesJumpChains``);
- felix in ``ChainInsertMode=Insert`` (the default) wants its inserted hooks to be the first
  rules of the chain and its ``AppendRules`` the last: every refresh compares the chain with
  ``expectedHashesForInsertAppendChain`` (felix/iptables/table.go) and re-writes its own rules
  when kube-proxy's got above them. In ``Append`` mode its inserted hooks go after everyone
  else's rules, still followed by its appends.

So, whichever started first, the steady state in Insert mode is: felix's inserted hooks,
kube-proxy's (and kubelet's) jumps, felix's appended rules. For example filter FORWARD is
``cali-FORWARD``, ``KUBE-PROXY-FIREWALL``, ``KUBE-FORWARD``, ``KUBE-SERVICES``,
``KUBE-EXTERNAL-SERVICES``, then felix's "Policy explicitly accepted packet." ACCEPT and its
MARK; nat POSTROUTING is ``KUBE-POSTROUTING`` before ``cali-POSTROUTING``, which felix has
appended since v3.29 for exactly that reason.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Mapping

from tracer.dataplane.ir import BUILTIN_CHAINS, Chain, Rule, Ruleset, Table
from tracer.dataplane.lazy import LazyMapping
from tracer.policy.felix.lazy_render import ABSENT, OnDemandMapping
from tracer.kubeproxy.render import SERVICES, render_kube_proxy
from tracer.model.cluster import Cluster
from tracer.policy.felix.context import make_ctx
from tracer.policy.felix.static import kernel_hooks

# (table, kernel chain) -> how many rules at the end of the chain felix appended.
AppendCounts = dict[tuple[Table, str], int]


def merge_kube_proxy(felix: Ruleset, kube: dict[Table, dict[str, Chain]], *,
                     felix_appended: AppendCounts | None = None,
                     insert_mode: str = "Insert") -> Ruleset:
    """A new ruleset: ``felix``'s tables with kube-proxy's chains added and its kernel-chain
    jumps placed as described above. ``felix_appended`` says how many trailing rules of each
    kernel chain are felix's AppendRules (default: none)."""
    appended = felix_appended or {}
    tables: dict[Table, Mapping[str, Chain]] = {}
    for table in {**felix.tables, **kube}:
        ours = felix.tables.get(table, {})
        theirs = kube.get(table, {})
        overlay: dict[str, Chain] = {}       # kube-proxy's chains, and kernel chains merged
        for name, chain in theirs.items():
            if name not in BUILTIN_CHAINS[table]:
                overlay[name] = chain
                continue
            base = ours.get(name, Chain(name, (), policy="ACCEPT"))
            tail = appended.get((table, name), 0)
            rules = _place(base.rules, chain.rules, tail, insert_mode)
            overlay[name] = Chain(name, rules, base.policy or "ACCEPT")
        tables[table] = _overlaid(table, ours, overlay)
    return Ruleset(tables=tables, ipsets=felix.ipsets)


def _overlaid(table: Table, ours: Mapping[str, Chain],
              overlay: dict[str, Chain]) -> Mapping[str, Chain]:
    """Kernel chains first, then felix's chains, then kube-proxy's; felix's chains are only
    read (built, if the renderer builds lazily) when looked up, and their names listed only
    when the table is listed (a lazily rendered table lists them by rendering it whole)."""
    def listed() -> LazyMapping[str, Chain]:
        names = [c for c in BUILTIN_CHAINS[table] if c in overlay or c in ours]
        names += [c for c in ours if c not in BUILTIN_CHAINS[table]]
        names += [c for c in overlay if c not in BUILTIN_CHAINS[table] and c not in ours]
        return LazyMapping(names, lambda name: overlay[name] if name in overlay else ours[name])

    def one(name: str) -> Chain:
        found = overlay.get(name)
        return found if found is not None else ours.get(name, ABSENT)
    return OnDemandMapping(one, functools.cache(listed), threading.RLock())


def _place(felix_rules: tuple[Rule, ...], kube_rules: tuple[Rule, ...], tail: int,
           insert_mode: str) -> tuple[Rule, ...]:
    cut = len(felix_rules) - tail
    inserted, appended = felix_rules[:cut], felix_rules[cut:]
    if insert_mode == "Append":
        return kube_rules + inserted + appended
    return inserted + kube_rules + appended


def felix_append_counts(cluster: Cluster, node: str, version: str | None) -> AppendCounts:
    """How many rules felix appends to each kernel chain (``Hooks.appended``)."""
    hooks = kernel_hooks(make_ctx(cluster, node, version))
    return {(table, kernel): len(h.appended) for table, chains in hooks.items()
            for kernel, h in chains.items() if h.appended}


def with_kube_proxy(cluster: Cluster, node: str, ruleset: Ruleset, *,
                    version: str | None = None) -> Ruleset:
    """``ruleset`` (felix's, rendered for ``node``) with kube-proxy added, once: a ruleset that
    already has nat KUBE-SERVICES is returned unchanged."""
    if SERVICES in ruleset.tables.get(Table.NAT, {}):
        return ruleset
    return merge_kube_proxy(ruleset, render_kube_proxy(cluster, node),
                            felix_appended=felix_append_counts(cluster, node, version),
                            insert_mode=cluster.felix_for(node).chain_insert_mode)
