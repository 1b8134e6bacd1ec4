"""felix's rendered rules in nftables form, translated the way felix's nftables backend does.

The input is the felix renderer's ruleset (:func:`tracer.policy.felix.render.render_node`), the
same typed rules the iptables form prints. In nftables mode felix differs only where its
backend or its ``r.nft`` switches say so:

- one ``table ip calico``; each iptables table is a *layer* (felix/nftables/table_layer.go)
  whose chains, jump targets and maps get the layer's name as prefix
  (``cali-FORWARD`` -> ``filter-cali-FORWARD``); the kernel chains are base chains
  ``<layer>-<CHAIN>`` with the hooks and priorities of felix/nftables/table.go ``baseChains``;
- chain names may be 256 characters (knftables.NameLengthMax), so policy and profile chains are
  not hashed down to 28 (rules/policy.go PolicyChainName/ProfileChainName with ``nft``);
- workload dispatch is one verdict-map rule (rules/dispatch.go buildSingleDispatchChainsVMAP)
  plus the end rules; the map holds ``"<iface>" : goto <layer>-cali-fw-<iface>``
  (DispatchMappings); the prefix-tree child chains are not programmed (v3.30 on; v3.29 keeps
  the tree, with ``cali5*`` wildcards);
- every rule's text is felix/nftables' rendering (match_builder.go, actions.go, renderer.go),
  its hash is generictables.RuleHashes over that text under the layered chain name, and its
  comment is ``cali:<hash>;`` plus felix's comments cut to 128 characters;
- ipsets are nftables sets named with ``:`` -> ``-`` (LegalizeSetName), typed per ipsets.go.
"""

from __future__ import annotations

import hashlib

from tracer.dataplane import ir
from tracer.dataplane.ir import BUILTIN_CHAINS, Table
from tracer.model.cluster import Cluster
from tracer.nft import text as nft_text
from tracer.nft.model import (HOOKS, BaseChain, NftChain, NftMap, NftRule, NftRuleset, NftSet,
                              NftTable, VmapMatch)
from tracer.policy.felix import static
from tracer.policy.felix.context import make_ctx
from tracer.policy.felix.names import (RULE_HASH_LENGTH, b64, length_limited_id,
                                       policy_chain_name, policy_chain_suffix)
from tracer.policy.felix.render import render_node
from tracer.policy.felix.versions import resolve_version

TABLE_NAME = "calico"
MAX_CHAIN_NAME_LENGTH = 256        # knftables.NameLengthMax
MAX_COMMENT_LENGTH = 128           # knftables.CommentLengthMax
HASH_PREFIX = "cali:"              # rulesdefs.RuleHashPrefix

# felix/nftables/table.go baseChains: (type, priority) per layer and kernel chain.
BASE_CHAINS: dict[Table, dict[str, tuple[str, str]]] = {
    Table.RAW: {"PREROUTING": ("filter", "raw"), "OUTPUT": ("filter", "raw")},
    Table.MANGLE: {"PREROUTING": ("filter", "mangle"), "INPUT": ("filter", "mangle"),
                   "FORWARD": ("filter", "mangle"), "OUTPUT": ("route", "mangle"),
                   "POSTROUTING": ("filter", "mangle")},
    Table.NAT: {"PREROUTING": ("nat", "dstnat"), "INPUT": ("nat", "dstnat"),
                "OUTPUT": ("nat", "srcnat+10"), "POSTROUTING": ("nat", "srcnat+10")},
    Table.FILTER: {"INPUT": ("filter", "filter"), "FORWARD": ("filter", "filter"),
                   "OUTPUT": ("filter", "filter")},
}
# Layers in the order felix creates them (int_dataplane.go: mangle, nat, raw, filter).
LAYERS = (Table.MANGLE, Table.NAT, Table.RAW, Table.FILTER)

# rules/rule_defs.go: the workload dispatch chains and the verdict maps that replace their trees
# (since v3.30, projectcalico/calico#9323; v3.29 dispatched through the prefix tree).
VMAP_SINCE = (3, 30)
VMAP_DISPATCH = {"cali-from-wl-dispatch": ("in", "cali-from-wl-dispatch"),
                 "cali-to-wl-dispatch": ("out", "cali-to-wl-dispatch")}


def layered(layer: Table, name: str) -> str:
    """tableLayer.namespaceName: ``<layer>-<name>`` unless it already starts with the layer."""
    return name if name.startswith(layer.value) else f"{layer.value}-{name}"


def legal_set_name(name: str) -> str:
    """nftables.LegalizeSetName."""
    return name.replace(":", "-")


def rule_hashes(chain: str, bodies: list[str]) -> list[str]:
    """generictables.RuleHashes over the nft rule bodies (the renderer's renderRule)."""
    digest = hashlib.sha224(chain.encode()).digest()
    out = []
    for body in bodies:
        digest = hashlib.sha224(digest + body.encode()).digest()
        out.append(b64(digest)[:RULE_HASH_LENGTH])
    return out


def comment_for(rule_hash: str, comments: tuple[str, ...]) -> str:
    """nftRenderer.comment: ``cali:<hash>;`` then each comment cut to an equal share of 128."""
    fragments = [f"{HASH_PREFIX}{rule_hash};"]
    if comments:
        share = (MAX_COMMENT_LENGTH - len(" ".join(fragments))) // len(comments)
        fragments += [c[:share] for c in comments]
    return " ".join(fragments)[:MAX_COMMENT_LENGTH]


def render_nft(cluster: Cluster, node: str, *, version: str | None = None) -> NftRuleset:
    """``node``'s felix nftables table, as felix in nftables mode programs it."""
    ruleset = render_node(cluster, node, version=version)
    ctx = make_ctx(cluster, node, version)
    release = resolve_version(cluster, version)
    vmaps = tuple(int(part) for part in release.split(".")) >= VMAP_SINCE
    renames = _chain_renames(cluster, ctx)
    hooks = static.kernel_hooks(ctx)
    set_types = {legal_set_name(name): ruleset.ipsets[name].set_type for name in ruleset.ipsets}

    chains: dict[str, NftChain] = {}
    maps: dict[str, NftMap] = {}
    for layer in LAYERS:
        tree_children = _dispatch_children(ruleset, layer) if vmaps else set()
        for name, chain in ruleset.tables[layer].items():
            if name in tree_children:
                continue
            if name in BUILTIN_CHAINS[layer]:
                inserted = len(hooks[layer].get(name, static.Hooks()).inserted)
                out = _base_chain(layer, chain, inserted, renames, set_types)
            elif vmaps and name in VMAP_DISPATCH and layer is Table.FILTER:
                out, vmap = _vmap_dispatch(layer, chain, ruleset, renames, set_types)
                maps[vmap.name] = vmap
            else:
                out = _regular_chain(layer, chain, renames, set_types)
            chains[out.name] = out
    sets = {legal_set_name(s.name): _nft_set(s) for s in ruleset.ipsets.values()}
    table = NftTable("ip", TABLE_NAME, chains, sets, maps)
    return NftRuleset((table,), warnings=ruleset.warnings)


# ----------------------------------------------------------------------------- chain names


def _chain_renames(cluster: Cluster, ctx) -> dict[str, str]:
    """iptables chain name -> nftables (unlayered) name, where the 256-character limit changes
    it: policy and profile chains."""
    renames: dict[str, str] = {}
    for pol in cluster.policies:
        for prefix in ("cali-pi-", "cali-po-"):
            suffix = policy_chain_suffix(pol, ctx.knob)
            renames[policy_chain_name(prefix, pol, ctx.knob)] = length_limited_id(
                prefix, suffix, MAX_CHAIN_NAME_LENGTH)
    profiles = (set(cluster.profiles)
                | {p for ep in cluster.endpoints.values() for p in ep.profiles}
                | {p for hep in cluster.host_endpoints for p in hep.profiles})
    for profile in profiles:
        for prefix in ("cali-pri-", "cali-pro-"):
            renames[length_limited_id(prefix, profile)] = length_limited_id(
                prefix, profile, MAX_CHAIN_NAME_LENGTH)
    return {old: new for old, new in renames.items() if old != new}


def _nft_chain_name(layer: Table, name: str, renames: dict[str, str]) -> str:
    return layered(layer, renames.get(name, name))


# ----------------------------------------------------------------------------- chains


def _base_chain(layer: Table, chain: ir.Chain, inserted: int, renames, set_types) -> NftChain:
    """A kernel chain's hooks: inserted rules hashed under the chain's name, appended ones
    under ``<name>*appends*`` (expectedHashesForInsertAppendChain)."""
    name = layered(layer, chain.name)
    kind, priority = BASE_CHAINS[layer][chain.name]
    first = [_translate(layer, r, renames, set_types) for r in chain.rules[:inserted]]
    rest = [_translate(layer, r, renames, set_types) for r in chain.rules[inserted:]]
    hashes = (rule_hashes(name, [t.text for t in first])
              + rule_hashes(name + "*appends*", [t.text for t in rest]))
    rules = _with_comments(first + rest, chain.rules, hashes, layer, chain.name)
    base = BaseChain(kind, HOOKS[chain.name], priority)   # type: ignore[arg-type]
    return NftChain(name, rules, base)


def _regular_chain(layer: Table, chain: ir.Chain, renames, set_types) -> NftChain:
    name = _nft_chain_name(layer, chain.name, renames)
    translated = [_translate(layer, r, renames, set_types) for r in chain.rules]
    hashes = rule_hashes(name, [t.text for t in translated])
    return NftChain(name, _with_comments(translated, chain.rules, hashes, layer, chain.name))


def _with_comments(translated: list[NftRule], originals: tuple[ir.Rule, ...],
                   hashes: list[str], layer: Table, chain: str) -> tuple[NftRule, ...]:
    out = []
    for index, (rule, original, rule_hash) in enumerate(zip(translated, originals, hashes), 1):
        felix_comments = tuple(c for c in original.comments if not c.startswith(HASH_PREFIX))
        out.append(NftRule(rule.matches, rule.target, rule.text,
                           comment_for(rule_hash, felix_comments), original.provenance,
                           (layer.value, chain, index)))
    return tuple(out)


def _translate(layer: Table, rule: ir.Rule, renames, set_types) -> NftRule:
    target = rule.target
    if isinstance(target, ir.Jump):
        target = ir.Jump(_nft_chain_name(layer, target.chain, renames))
    elif isinstance(target, ir.Goto):
        target = ir.Goto(_nft_chain_name(layer, target.chain, renames))
    matches = tuple(_nft_set_match(m) for m in rule.matches)
    body = nft_text.rule_body(matches, target, set_types)
    return NftRule(matches, target, body, provenance=rule.provenance)


def _nft_set_match(match: ir.Match) -> ir.Match:
    if isinstance(match, ir.SetMatch):
        return ir.SetMatch(legal_set_name(match.set_name), match.flags, match.negated)
    return match


# ----------------------------------------------------------------------------- dispatch


def _dispatch_children(ruleset: ir.Ruleset, layer: Table) -> set[str]:
    """The prefix-tree children of the workload dispatch chains (``cali-from-wl-dispatch-5``),
    which the verdict map replaces."""
    if layer is not Table.FILTER:
        return set()
    return {name for name in ruleset.tables[layer]
            if any(name.startswith(root + "-") for root in VMAP_DISPATCH)}


def _vmap_dispatch(layer: Table, chain: ir.Chain, ruleset: ir.Ruleset, renames,
                   set_types) -> tuple[NftChain, NftMap]:
    """buildSingleDispatchChainsVMAP: ``<dir>ifname vmap @map`` then the tree's end rules."""
    direction, map_id = VMAP_DISPATCH[chain.name]
    map_name = layered(layer, map_id)
    elements: dict[str, ir.Target] = {}
    end_rules: list[ir.Rule] = []
    for rule in chain.rules:
        if _exact_iface(rule) is not None:
            sends = [rule]                                        # a lone name's goto
        elif isinstance(rule.target, ir.Goto) and rule.matches:
            sends = list(ruleset.tables[layer][rule.target.chain].rules)   # a prefix's child
        else:
            end_rules.append(rule)
            continue
        for send in sends:
            iface = _exact_iface(send)
            if iface is not None and isinstance(send.target, ir.Goto):
                elements[iface] = ir.Goto(_nft_chain_name(layer, send.target.chain, renames))
    vmap_rule = NftRule((VmapMatch(direction, map_name),), None,  # type: ignore[arg-type]
                        nft_text.match_clause(VmapMatch(direction, map_name), None, {}))
    rest = [_translate(layer, r, renames, set_types) for r in end_rules]
    name = layered(layer, chain.name)
    translated = [vmap_rule, *rest]
    hashes = rule_hashes(name, [t.text for t in translated])
    dispatch_prov = ir.Provenance(role="dispatch", source="rules/dispatch.go")
    originals = (ir.Rule(provenance=dispatch_prov), *end_rules)
    rules = _with_comments(translated, originals, hashes, layer, chain.name)
    members = tuple(sorted(elements.items()))
    return NftChain(name, rules), NftMap(map_name, "ifname : verdict", members)


def _exact_iface(rule: ir.Rule) -> str | None:
    """The interface a dispatch rule sends to its endpoint chain (not a ``+`` prefix)."""
    for match in rule.matches:
        if isinstance(match, ir.InterfaceMatch) and not match.name.endswith("+"):
            if isinstance(rule.target, ir.Goto):
                return match.name
    return None


# ----------------------------------------------------------------------------- sets


def _nft_set(ipset: ir.IpSet) -> NftSet:
    """IPSets.NFTablesSet: hash:net sets are intervals; hash:ip,port sets concatenate."""
    kind = ipset.set_type
    if kind == "hash:net":
        return NftSet(legal_set_name(ipset.name), "ipv4_addr", ("interval",),
                      ipset.members, ipset)
    if kind == "hash:ip":
        return NftSet(legal_set_name(ipset.name), "ipv4_addr", (), ipset.members, ipset)
    if kind == "hash:ip,port":
        elements = tuple(_ip_port_element(m) for m in ipset.members)
        return NftSet(legal_set_name(ipset.name), "ipv4_addr . inet_proto . inet_service", (),
                      elements, ipset)
    if kind == "bitmap:port":
        return NftSet(legal_set_name(ipset.name), "inet_service", (), ipset.members, ipset)
    raise ValueError(f"felix renders no nftables set for ipset type {kind} ({ipset.name})")


def _ip_port_element(member: str) -> str:
    """``10.0.0.5,tcp:8080`` (ipset save) -> ``10.0.0.5 . tcp . 8080``."""
    addr, _, proto_port = member.partition(",")
    proto, _, port = proto_port.partition(":")
    return f"{addr} . {proto} . {port}"
