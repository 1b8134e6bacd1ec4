"""A node's ruleset rendered chain by chain, as packets reach the chains.

The eager renderer (:func:`tracer.policy.felix.render.render_node_eager`) builds every
endpoint's chains, every policy group and every selected policy's chains of the node (on a big
cluster thousands of chains, each rule hashed), only to find which chains the kernel hooks
reach. A packet walks a dozen of them. Here a chain is built when first looked up, and only
by name: the node's kernel chains are the roots, and a chain becomes *known to exist* when a
chain already built jumps to it (the eager renderer keeps exactly the chains reachable from the
hooks, so a jump target always is one). The same holds for ipsets: a set matched by a built
rule is programmed.

Anything the reachability walk cannot answer without the whole node (iterating a table, its
length, looking up a name no built chain names) is answered by the eager rendering, built
then, once. So the lazy ruleset equals the eager one in every observable way; the
differential test (tests/test_lazy_render.py) compares them chain by chain.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Generic, TypeVar

from tracer.dataplane.ir import BUILTIN_CHAINS, Chain, IpSet, Ruleset, SetMatch, Table
from tracer.model.cluster import Cluster, Policy
from tracer.policy.felix import static
from tracer.policy.felix.builder import FChain, FRule
from tracer.policy.felix.context import Ctx, make_ctx
from tracer.policy.felix.dispatch import workload_dispatch_chains
from tracer.policy.felix.endpoints import (TierGroups, group_chains, normal_policy, tiers_for,
                                           workload_chains)
from tracer.policy.felix.facts import ClusterFacts
from tracer.policy.felix.hosts import host_endpoint_chains, policies_in
from tracer.policy.felix.ipsets import fixed_sets, selector_set
from tracer.policy.felix.names import endpoint_chain_name, policy_chain_name
from tracer.policy.felix.nat import nat_outgoing_chain
from tracer.policy.felix.policy_chains import policy_chains, profile_chains, referenced_sets
from tracer.policy.felix.render import _ir_rules, _kernel_rules, _profile, _targets

V = TypeVar("V")
ABSENT = object()           # what ``quick`` returns for a name it knows is not there
SHARED_TABLES = (Table.RAW, Table.MANGLE, Table.FILTER)   # policy_mgr programs all three


class OnDemandMapping(Mapping[str, V], Generic[V]):
    """Values built by ``quick(name)`` and kept (None: it cannot tell; :data:`ABSENT`: there
    is none); whatever ``quick`` cannot answer, and iteration, comes from ``full()``, the
    complete mapping."""

    def __init__(self, quick: Callable[[str], V | None], full: Callable[[], Mapping[str, V]],
                 lock: threading.RLock):
        self._quick = quick
        self._full = full
        self._built: dict[str, V] = {}
        self._lock = lock

    def __getitem__(self, name: str) -> V:
        value = self._built.get(name)
        if value is not None:
            return value
        with self._lock:
            value = self._built.get(name)
            if value is None:
                value = self._quick(name)
                if value is ABSENT:
                    raise KeyError(name)
                if value is None:
                    value = self._full()[name]          # KeyError when it has none either
                self._built[name] = value
        return value

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        try:
            self[name]
        except KeyError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(self._full())

    def __len__(self) -> int:
        return len(self._full())

    @property
    def built(self) -> tuple[str, ...]:
        """The names built so far, in the order they were built."""
        return tuple(self._built)


def render_node_lazy(cluster: Cluster, node: str, *, version: str | None,
                     facts: ClusterFacts | None,
                     eager: Callable[[], Ruleset]) -> Ruleset:
    """``node``'s ruleset, chains and ipsets built on demand; ``eager()`` renders it whole
    (called at most once, only for questions reachability cannot answer)."""
    return _LazyNode(make_ctx(cluster, node, version, facts), eager).ruleset()


class _LazyNode:
    """One node's chains by name (registered cheaply, built when reached), which chains and
    ipsets are known to be programmed, and the eager rendering once asked for."""

    def __init__(self, ctx: Ctx, eager: Callable[[], Ruleset]):
        self.ctx = ctx
        self._eager_render = eager
        self._eager: Ruleset | None = None
        self.lock = threading.RLock()
        cluster, node = ctx.cluster, ctx.node.name
        # Chains every node has, in the eager renderer's candidate order (a later chain of a
        # name replaces an earlier one, as UpdateChain does).
        static_chains: dict[Table, list[FChain]] = {
            Table.RAW: static.raw_chains(ctx) + [static.rpf_skip_chain()],
            Table.MANGLE: static.mangle_chains(ctx),
            Table.NAT: static.nat_chains(ctx) + [nat_outgoing_chain(ctx)],
            Table.FILTER: static.filter_chains(ctx) + [static.cidr_block_chain(ctx)],
        }
        self.endpoints = {}
        eps = sorted((ep for ep in cluster.endpoints.values()
                      if ep.pod.node == node and not ep.pod.host_network),
                     key=lambda ep: ep.interface)
        for ep in eps:
            for prefix in ("cali-tw-", "cali-fw-"):
                self.endpoints[endpoint_chain_name(prefix, ep.interface)] = ep
        static_chains[Table.FILTER] += workload_dispatch_chains(ctx, [ep.interface
                                                                      for ep in eps])
        hosts = host_endpoint_chains(ctx)
        for table, chains in hosts.chains.items():
            static_chains[table] += chains
        self.chains: dict[Table, dict[str, FChain | Callable[[], FChain]]] = {
            table: {c.name: c for c in chains} for table, chains in static_chains.items()}
        self._tier_done: set[int] = set()
        self._profiles_done: set[str] = set()
        self.specs: dict[str, object] = {}
        self._register_tiers(hosts.tiers)
        self._register_profiles(sorted(hosts.profiles))

        hooks = static.kernel_hooks(ctx)
        self.kernel: dict[Table, dict[str, Chain]] = {}
        self.known: dict[Table, set[str]] = {}
        self.known_sets: set[str] = set()
        for table in Table:
            self.kernel[table], self.known[table] = {}, set()
            for kernel in BUILTIN_CHAINS[table]:
                hook = hooks[table].get(kernel, static.Hooks())
                self.kernel[table][kernel] = Chain(kernel, _kernel_rules(kernel, hook, ctx),
                                                   policy="ACCEPT")
                for rule in (*hook.inserted, *hook.appended):
                    self.known[table].update(_targets(rule))
                    self._note_sets(rule)
        self.fixed = {s.name: s for s in fixed_sets(ctx)}

    # -- the eager answer, for what reachability cannot tell

    def eager(self) -> Ruleset:
        with self.lock:
            if self._eager is None:
                self._eager = self._eager_render()
            return self._eager

    def ruleset(self) -> Ruleset:
        tables = {table: OnDemandMapping(self._chain_builder(table),
                                         lambda t=table: self.eager().tables[t], self.lock)
                  for table in Table}
        return Ruleset(tables=tables, ipsets=OnDemandMapping(
            self._ipset, lambda: self.eager().ipsets, self.lock))

    # -- chains

    def _chain_builder(self, table: Table) -> Callable[[str], Chain | None]:
        def build(name: str) -> Chain | None:
            found = self.kernel[table].get(name)
            if found is not None:
                return found
            if not name.startswith("cali-") and name not in BUILTIN_CHAINS[table]:
                return ABSENT               # every chain felix programs is named cali-*
            if name not in self.known[table]:
                return None
            fchain = self._fchain(table, name)
            if fchain is None:
                return None
            for rule in fchain.rules:
                self.known[table].update(_targets(rule))
                self._note_sets(rule)
            return Chain(name, _ir_rules(name, fchain.rules))
        return build

    def _fchain(self, table: Table, name: str) -> FChain | None:
        if table == Table.FILTER and name in self.endpoints:
            self._register_endpoint(self.endpoints.pop(name))
        entry = self.chains[table].get(name)
        if entry is None:
            return None
        if not isinstance(entry, FChain):
            entry = entry()
        return entry

    def _register_endpoint(self, ep) -> None:
        """The endpoint's to/from chains, and the groups, policies and profiles they jump to."""
        for other in [n for n, e in self.endpoints.items() if e is ep]:
            del self.endpoints[other]
        tiers = tiers_for(self.ctx, ep.labels, kinds=normal_policy)
        for chain in workload_chains(self.ctx, ep.interface, tiers, ep.profiles, ep.key):
            self.chains[Table.FILTER][chain.name] = chain
        self._register_tiers(tiers)
        self._register_profiles(ep.profiles)

    def _register_tiers(self, tiers: list[TierGroups]) -> None:
        for chain in group_chains(self.ctx, tiers):
            for table in SHARED_TABLES:
                self.chains[table].setdefault(chain.name, chain)
        for pol in policies_in(tiers):
            if id(pol) in self._tier_done:
                continue
            self._tier_done.add(id(pol))
            self._register_policy(pol)

    def _register_policy(self, pol: Policy) -> None:
        if pol.staged:
            return
        for direction in ("ingress", "egress"):
            for spec in referenced_sets(self.ctx, pol, direction):
                self.specs.setdefault(self.ctx.set_name(spec.set_id), spec)
        memo: list[list[FChain]] = []

        def chains() -> list[FChain]:
            if not memo:
                memo.append(policy_chains(self.ctx, pol))
            return memo[0]
        for index, prefix in enumerate(("cali-pi-", "cali-po-")):
            name = policy_chain_name(prefix, pol, self.ctx.knob)
            for table in SHARED_TABLES:
                self.chains[table].setdefault(name, lambda i=index: chains()[i])

    def _register_profiles(self, names) -> None:
        for name in names:
            if name in self._profiles_done:
                continue
            self._profiles_done.add(name)
            profile = _profile(self.ctx.cluster, name)
            for direction in ("ingress", "egress"):
                for spec in referenced_sets(self.ctx, profile, direction):
                    self.specs.setdefault(self.ctx.set_name(spec.set_id), spec)
            inbound, outbound = profile_chains(self.ctx, profile)
            self.chains[Table.FILTER][inbound.name] = inbound
            self.chains[Table.FILTER][outbound.name] = outbound
            self.chains[Table.MANGLE][outbound.name] = outbound

    def _note_sets(self, rule: FRule) -> None:
        self.known_sets.update(m.set_name for _, m in rule.match.parts
                               if isinstance(m, SetMatch))

    # -- ipsets

    def _ipset(self, name: str) -> IpSet | None:
        found = self.fixed.get(name)
        if found is not None:
            return found
        if name not in self.known_sets or name not in self.specs:
            return None
        return selector_set(self.ctx, name, self.specs[name])
