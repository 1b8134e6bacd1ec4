"""Policy and profile chains ``cali-pi/po/pri/pro-*`` (felix/rules/policy.go).

ProtoRuleToIptablesRules: IP-version filtering, match blocks for what one iptables rule
cannot express (port lists over 15 slots, named ports, several CIDRs, CIDRs plus negated
CIDRs), CalculateRuleMatch's fixed match order, then the per-version action rules.
"""

from __future__ import annotations

import re
from dataclasses import replace

from tracer.dataplane.ir import Provenance
from tracer.model.cluster import Policy, Profile
from tracer.policy.felix import builder as b
from tracer.policy.felix.builder import M, FChain, FRule
from tracer.policy.felix.context import Ctx
from tracer.policy.felix.names import (KIND_SHORT, felix_policy_name, policy_chain_name,
                                       policy_comment, profile_chain_name)
from tracer.policy.felix.parsed import ParsedRule, Ranges, SetSpec, parse_rule

SOURCE = "rules/policy.go"


def split_port_list(ranges: Ranges) -> list[Ranges]:
    """SplitPortList: groups of at most 15 multiport slots (a range takes two)."""
    splits, current, slots = [], [], 15
    for lo, hi in ranges:
        need = 1 if lo == hi else 2
        if slots < need:
            splits.append(tuple(current))
            current, slots = [], 15
        current.append((lo, hi))
        slots -= need
    if current:
        splits.append(tuple(current))
    return splits


def _is_catch_all_negated(rule: ParsedRule) -> bool:
    return "0.0.0.0/0" in rule.not_src_nets or "0.0.0.0/0" in rule.not_dst_nets


class _MatchBlocks:
    """matchBlockBuilder: scratch0 = "all blocks passed", scratch1 = "this block passed"."""

    def __init__(self, ctx: Ctx):
        self.all_pass, self.this_pass = ctx.marks.scratch0, ctx.marks.scratch1
        self.rules: list[FRule] = []
        self.used = False
        self.done_first_positive = False

    def _initial(self, bits: int) -> None:
        if not self.used:
            self.rules.append(FRule(M(), b.set_masked_mark(bits, self.all_pass | self.this_pass)))
            self.used = True

    def _positive(self, matches: list[M]) -> None:
        self._initial(0)
        mark = self.this_pass if self.done_first_positive else self.all_pass
        self.rules += [FRule(m, b.set_mark(mark)) for m in matches]
        if self.done_first_positive:
            # AllBlocks &&= ThisBlock
            self.rules.append(FRule(M().mark_clear(self.this_pass), b.clear_mark(self.all_pass)))
        self.done_first_positive = True

    def ports(self, ctx: Ctx, proto, splits: list[Ranges], named: tuple[SetSpec, ...],
              direction: str) -> None:
        base = M().protocol(proto) if proto is not None else M()
        alts = [base.ports(direction, split) for split in splits]
        flags = "src,src" if direction == "src" else "dst,dst"
        alts += [M().ipset(ctx.set_name(s.set_id), flags) for s in named]
        self._positive(alts)

    def cidrs(self, cidrs: tuple[str, ...], direction: str) -> None:
        self._positive([M().net(direction, c) for c in cidrs])

    def negated_cidrs(self, cidrs: tuple[str, ...], direction: str) -> None:
        self._initial(self.all_pass)
        self.rules += [FRule(M().net(direction, c), b.clear_mark(self.all_pass)) for c in cidrs]


def calculate_rule_match(ctx: Ctx, r: ParsedRule) -> M:
    """CalculateRuleMatch: positive matches, then the negated ones, in felix's order."""
    m, name = M(), ctx.set_name
    if r.protocol is not None:
        m = m.protocol(r.protocol)
    if len(r.src_nets) == 1:
        m = m.net("src", r.src_nets[0])
    for s in r.src_sets:
        m = m.ipset(name(s.set_id), "src")
    if r.src_ports:
        m = m.ports("src", r.src_ports)
    for s in r.src_named:
        m = m.ipset(name(s.set_id), "src,src")
    if len(r.dst_nets) == 1:
        m = m.net("dst", r.dst_nets[0])
    for s in r.dst_sets:
        m = m.ipset(name(s.set_id), "dst")
    if r.dst_ports:
        m = m.ports("dst", r.dst_ports)
    for s in r.dst_named:
        m = m.ipset(name(s.set_id), "dst,dst")
    if r.icmp is not None:
        m = m.icmp(*r.icmp)
    if r.not_protocol is not None:
        m = m.protocol(r.not_protocol, negated=True)
    if len(r.not_src_nets) == 1:
        m = m.net("src", r.not_src_nets[0], negated=True)
    for s in r.not_src_sets:
        m = m.ipset(name(s.set_id), "src", negated=True)
    for split in split_port_list(r.not_src_ports):
        m = m.ports("src", split, negated=True)
    for s in r.not_src_named:
        m = m.ipset(name(s.set_id), "src,src", negated=True)
    if len(r.not_dst_nets) == 1:
        m = m.net("dst", r.not_dst_nets[0], negated=True)
    for s in r.not_dst_sets:
        m = m.ipset(name(s.set_id), "dst", negated=True)
    for split in split_port_list(r.not_dst_ports):
        m = m.ports("dst", split, negated=True)
    for s in r.not_dst_named:
        m = m.ipset(name(s.set_id), "dst,dst", negated=True)
    if r.not_icmp is not None:
        m = m.icmp(*r.not_icmp, negated=True)
    return m


def _log_prefix(ctx: Ctx, owner: Policy | Profile) -> str:
    """generateLogPrefix (v3.30+ expands %t %k %n %p; v3.29 uses the prefix as is)."""
    prefix = ctx.felix.log_prefix or "calico-packet"
    if ctx.knob.version == "3.29" or "%" not in prefix:
        return prefix
    if isinstance(owner, Policy):
        kind, name, ns, tier = KIND_SHORT.get(owner.kind, owner.kind), \
            felix_policy_name(owner, ctx.knob), owner.namespace, owner.tier
    else:
        kind, name, ns, tier = "pro", owner.name, None, ""
    values = {"%k": kind, "%n": name, "%t": tier, "%p": f"{ns}/{name}" if ns else name}
    return re.sub(r"%[tknp]", lambda mo: values[mo.group(0)], prefix)


def action_rules(ctx: Ctx, r: ParsedRule, match: M, owner: Policy | Profile) -> list[FRule]:
    """CombineMatchAndActionsForProtoRule (v3.30+) / CalculateActions (v3.29)."""
    marks = ctx.marks
    if r.action == "log":
        # The rate limit comes first: CombineMatches(logMatch, match) (v3.30.6+).
        rate = ctx.felix.log_action_rate_limit
        if rate:
            match = M().limit(rate, ctx.felix.log_action_rate_limit_burst) + match
        return [FRule(match, b.log(_log_prefix(ctx, owner)))]
    if r.action in ("allow", ""):
        mark, follow = marks.accept, b.RETURN
    elif r.action in ("pass", "next-tier"):
        mark, follow = marks.pass_, b.RETURN
    elif ctx.knob.drop_mark:            # deny, v3.30+: flag the drop bit, then drop on it
        mark, follow = marks.drop, ctx.deny
    else:                                # deny, v3.29: one rule
        return [FRule(match, ctx.deny)]
    return [FRule(match, b.set_mark(mark)), FRule(M().mark_set(mark), follow)]


def proto_rule_to_rules(ctx: Ctx, r: ParsedRule, owner: Policy | Profile) -> list[FRule]:
    """ProtoRuleToIptablesRules for one rule (already IP-version filtered by the caller)."""
    blocks = _MatchBlocks(ctx)
    src_splits, dst_splits = split_port_list(r.src_ports), split_port_list(r.dst_ports)
    fields = {}
    if len(src_splits) + len(r.src_named) > 1:
        blocks.ports(ctx, r.protocol, src_splits, r.src_named, "src")
        fields.update(src_ports=(), src_named=())
    if len(dst_splits) + len(r.dst_named) > 1:
        blocks.ports(ctx, r.protocol, dst_splits, r.dst_named, "dst")
        fields.update(dst_ports=(), dst_named=())
    src_nets, dst_nets = r.src_nets, r.dst_nets
    if len(src_nets) > 1:
        blocks.cidrs(src_nets, "src")
        src_nets = ()
    if len(dst_nets) > 1:
        blocks.cidrs(dst_nets, "dst")
        dst_nets = ()
    fields.update(src_nets=src_nets, dst_nets=dst_nets)
    if len(src_nets) + len(r.not_src_nets) > 1:
        blocks.negated_cidrs(r.not_src_nets, "src")
        fields["not_src_nets"] = ()
    if len(dst_nets) + len(r.not_dst_nets) > 1:
        blocks.negated_cidrs(r.not_dst_nets, "dst")
        fields["not_dst_nets"] = ()
    match = calculate_rule_match(ctx, replace(r, **fields))
    if blocks.used:
        match = match.mark_set(blocks.all_pass)
    out = blocks.rules + action_rules(ctx, r, match, owner)
    notes = tuple(f"{k}={v}" for k, v in sorted(r.annotations))   # Go map order: sorted here
    return [rule.with_comments(*notes) for rule in out]


def _rules_chain(ctx: Ctx, name: str, rules: tuple,
                 owner: Policy | Profile, direction: str, comment: str,
                 prov: dict) -> FChain:
    """ProtoRulesToIptablesRules: render, strip trailing RETURNs, add the chain comment."""
    out: list[FRule] = []
    for index, rule in enumerate(rules):
        if rule.ip_version not in (None, 4):
            continue
        parsed = parse_rule(rule)
        if ctx.knob.version != "3.29" and _is_catch_all_negated(parsed):
            continue   # v3.30+ filterNets drops rules negating 0.0.0.0/0
        role = "policy-rule" if isinstance(owner, Policy) else "profile-rule"
        p = Provenance(role=role, direction=direction, rule_index=index, source=SOURCE, **prov)
        out += [r.with_provenance(p) for r in proto_rule_to_rules(ctx, parsed, owner)]
    while out and out[-1].action is not None and out[-1].action.is_return:
        out.pop()
    if not out:
        out = [FRule(provenance=Provenance(role="policy-chain-comment", direction=direction,
                                           source=SOURCE, **prov))]
    out[0] = out[0].with_comments(comment)
    return FChain(name, tuple(out))


def policy_chains(ctx: Ctx, policy: Policy) -> list[FChain]:
    """PolicyToIptablesChains: inbound and outbound chains (staged policies: none)."""
    if policy.staged:
        return []
    prov = dict(policy=policy.key, policy_kind=policy.kind, tier=policy.tier)
    return [
        _rules_chain(ctx, policy_chain_name("cali-pi-", policy, ctx.knob), policy.ingress,
                     policy, "ingress",
                     policy_comment(policy, ctx.knob, "ingress"), prov),
        _rules_chain(ctx, policy_chain_name("cali-po-", policy, ctx.knob), policy.egress,
                     policy, "egress",
                     policy_comment(policy, ctx.knob, "egress"), prov),
    ]


def profile_chains(ctx: Ctx, profile: Profile) -> list[FChain]:
    """ProfileToIptablesChains: ``cali-pri-<name>`` and ``cali-pro-<name>``."""
    prov = dict(profile=profile.name)
    return [
        _rules_chain(ctx, profile_chain_name("cali-pri-", profile.name), profile.ingress,
                     profile, "ingress", f"Profile {profile.name} ingress", prov),
        _rules_chain(ctx, profile_chain_name("cali-pro-", profile.name), profile.egress,
                     profile, "egress", f"Profile {profile.name} egress", prov),
    ]


def referenced_sets(ctx: Ctx, owner: Policy | Profile, direction: str) -> list[SetSpec]:
    """The ipsets one direction of a policy/profile references (for ipset rendering)."""
    out = []
    for rule in owner.rules(direction):
        if rule.ip_version in (None, 4):
            out += parse_rule(rule).all_sets()
    return out
