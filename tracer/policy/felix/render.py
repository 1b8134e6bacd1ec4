"""One node's iptables tables and ipsets exactly as felix (iptables mode) programs them.

Collects the chains felix's managers hand to each table, keeps the ones reachable from the
kernel-chain hooks (felix/iptables/table.go only programs referenced chains), stamps every
rule with its ``cali:<id>`` comment, and lists the ipsets those rules and felix's fixed
managers need.
"""

from __future__ import annotations

from tracer.dataplane import ir
from tracer.dataplane.lazy import LazyMapping
from tracer.dataplane.ir import BUILTIN_CHAINS, Chain, IpSet, Rule, Ruleset, SetMatch, Table
from tracer.model.cluster import Cluster, Policy, Profile
from tracer.policy.felix import static
from tracer.policy.felix.builder import FChain, FRule
from tracer.policy.felix.context import Ctx, make_ctx
from tracer.policy.felix.facts import ClusterFacts
from tracer.policy.felix.dispatch import workload_dispatch_chains
from tracer.policy.felix.endpoints import (TierGroups, group_chains, normal_policy, tiers_for,
                                           workload_chains)
from tracer.policy.felix.hosts import host_endpoint_chains, policies_in
from tracer.policy.felix.ipsets import fixed_sets, selector_set
from tracer.policy.felix.names import rule_ids, sanitise_comment
from tracer.policy.felix.nat import nat_outgoing_chain
from tracer.policy.felix.policy_chains import policy_chains, profile_chains, referenced_sets
from tracer.policy.felix.versions import SUPPORTED_VERSIONS, mark_bits  # noqa: F401 (API)

__all__ = ["SUPPORTED_VERSIONS", "mark_bits", "render_node", "render_node_eager",
           "local_endpoints"]


def local_endpoints(cluster: Cluster, node: str):
    """The node's workload endpoints (host-networked pods have none), by interface name."""
    eps = [ep for ep in cluster.endpoints.values()
           if ep.pod.node == node and not ep.pod.host_network]
    return sorted(eps, key=lambda ep: ep.interface)


def render_node(cluster: Cluster, node: str, *, version: str | None = None,
                facts: ClusterFacts | None = None) -> Ruleset:
    """Render ``node``'s raw/mangle/nat/filter tables and ipsets for a Calico release: each
    chain and ipset when first looked up (:mod:`tracer.policy.felix.lazy_render`); equal to
    :func:`render_node_eager`'s."""
    from tracer.policy.felix.lazy_render import render_node_lazy
    return render_node_lazy(cluster, node, version=version, facts=facts,
                            eager=lambda: render_node_eager(cluster, node, version=version,
                                                            facts=facts))


def render_node_eager(cluster: Cluster, node: str, *, version: str | None = None,
                      facts: ClusterFacts | None = None) -> Ruleset:
    """Render ``node``'s raw/mangle/nat/filter tables and ipsets for a Calico release.

    ``facts``: the cluster's label indexes, built once and shared when rendering several nodes
    of one cluster. The selector ipsets' members are computed when a set is first read."""
    ctx = make_ctx(cluster, node, version, facts)
    candidates: dict[Table, list[FChain]] = {
        Table.RAW: static.raw_chains(ctx) + [static.rpf_skip_chain()],
        Table.MANGLE: static.mangle_chains(ctx),
        Table.NAT: static.nat_chains(ctx) + [nat_outgoing_chain(ctx)],
        Table.FILTER: static.filter_chains(ctx) + [static.cidr_block_chain(ctx)],
    }
    all_tiers: list[TierGroups] = []
    profiles: set[str] = set()
    eps = local_endpoints(cluster, node)
    for ep in eps:
        tiers = tiers_for(ctx, ep.labels, kinds=normal_policy)
        all_tiers += tiers
        profiles.update(ep.profiles)
        candidates[Table.FILTER] += workload_chains(ctx, ep.interface, tiers, ep.profiles,
                                                    ep.key)
    candidates[Table.FILTER] += workload_dispatch_chains(ctx, [ep.interface for ep in eps])
    hosts = host_endpoint_chains(ctx)
    for table, chains in hosts.chains.items():
        candidates[table] += chains
    all_tiers += hosts.tiers
    profiles |= hosts.profiles

    policies = _unique_policies(policies_in(all_tiers))
    shared = group_chains(ctx, all_tiers)
    for pol in policies:
        shared += policy_chains(ctx, pol)
    for table in (Table.RAW, Table.MANGLE, Table.FILTER):   # policy_mgr: all three tables
        candidates[table] += shared
    for profile in sorted(profiles):
        inbound, outbound = profile_chains(ctx, _profile(cluster, profile))
        candidates[Table.FILTER] += [inbound, outbound]
        candidates[Table.MANGLE].append(outbound)

    hooks = static.kernel_hooks(ctx)
    programmed = {table: _program_table(table, candidates[table], hooks[table], ctx)
                  for table in Table}
    tables = {table: chains for table, (chains, _) in programmed.items()}
    used = set().union(*(sets for _, sets in programmed.values()))
    return Ruleset(tables=tables, ipsets=_ipsets(ctx, used, policies, profiles))


def _unique_policies(policies: list[Policy]) -> list[Policy]:
    seen, out = set(), []
    for pol in policies:
        ident = (pol.kind, pol.namespace, pol.name)
        if ident not in seen:
            seen.add(ident)
            out.append(pol)
    return out


def _profile(cluster: Cluster, name: str) -> Profile:
    # A profile named by an endpoint but absent from the datastore reaches felix with no rules.
    return cluster.profiles.get(name) or Profile(name=name)


# ---------------------------------------------------------------------------- programming


def _program_table(table: Table, chains: list[FChain], hooks: dict[str, static.Hooks],
                   ctx: Ctx) -> tuple[LazyMapping[str, Chain], set[str]]:
    """The table's programmed chains, and the ipsets their rules match on.

    Kernel chains come first, then the referenced chains by name. A chain's rules are
    converted (and their ``cali:`` IDs hashed) when it is first looked up: a packet walks a
    few of a node's hundreds of endpoint and policy chains."""
    by_name: dict[str, FChain] = {}
    for chain in chains:
        by_name[chain.name] = chain          # later updates replace earlier ones (UpdateChain)
    kernel_chains: dict[str, Chain] = {}
    roots: list[str] = []
    hook_rules: list[FRule] = []
    for kernel in BUILTIN_CHAINS[table]:
        hook = hooks.get(kernel, static.Hooks())
        kernel_chains[kernel] = Chain(kernel, _kernel_rules(kernel, hook, ctx), policy="ACCEPT")
        roots += [c for r in (*hook.inserted, *hook.appended) for c in _targets(r)]
        hook_rules += [*hook.inserted, *hook.appended]
    reachable = sorted(_reachable(roots, by_name))
    rules = [*hook_rules, *(r for name in reachable for r in by_name[name].rules)]
    used = {m.set_name for r in rules for _, m in r.match.parts if isinstance(m, SetMatch)}

    def build(name: str) -> Chain:
        found = kernel_chains.get(name)
        return found if found is not None else Chain(name, _ir_rules(name, by_name[name].rules))
    return LazyMapping([*kernel_chains, *reachable], build), used


def _kernel_rules(kernel: str, hook: static.Hooks, ctx: Ctx) -> tuple[Rule, ...]:
    """Inserted hooks (hashed under the kernel chain's name) and appends (``<name>*appends*``).

    With only felix's rules in the chain, insert and append mode give the same order."""
    inserted = _ir_rules(kernel, hook.inserted)
    appended = _ir_rules(kernel + "*appends*", hook.appended)
    return inserted + appended


def _targets(rule: FRule) -> list[str]:
    target = rule.action.target if rule.action else None
    return [target.chain] if isinstance(target, (ir.Jump, ir.Goto)) else []


def _reachable(roots: list[str], by_name: dict[str, FChain]) -> set[str]:
    seen: set[str] = set()
    stack = list(roots)
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        if name not in by_name:
            raise AssertionError(f"felix renderer bug: chain {name} referenced but not defined")
        seen.add(name)
        stack += by_name[name].referenced_chains()
    return seen


def _ir_rules(hash_chain: str, rules: tuple[FRule, ...] | list[FRule]) -> tuple[Rule, ...]:
    ids = rule_ids(hash_chain, rules)
    return tuple(
        Rule(matches=r.match.ir, target=r.action.target if r.action else None,
             comments=(f"cali:{rid}",) + tuple(sanitise_comment(c) for c in r.comments),
             provenance=r.provenance)
        for rid, r in zip(ids, rules))


# ---------------------------------------------------------------------------- ipsets


def _ipsets(ctx: Ctx, used: set[str], policies: list[Policy],
            profiles: set[str]) -> LazyMapping[str, IpSet]:
    specs = {}
    owners = list(policies) + [_profile(ctx.cluster, p) for p in sorted(profiles)]
    for owner in owners:
        if isinstance(owner, Policy) and owner.staged:
            continue
        for direction in ("ingress", "egress"):
            for spec in referenced_sets(ctx, owner, direction):
                specs.setdefault(ctx.set_name(spec.set_id), spec)
    fixed = {s.name: s for s in fixed_sets(ctx)}
    selectors = sorted(name for name in specs if name in used and name not in fixed)
    missing = used - set(fixed) - set(selectors)
    if missing:
        raise AssertionError(f"felix renderer bug: ipsets referenced but not rendered: {missing}")

    def build(name: str) -> IpSet:
        return fixed.get(name) or selector_set(ctx, name, specs[name])
    return LazyMapping([*fixed, *selectors], build)
