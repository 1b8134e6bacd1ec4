"""Names and IDs felix derives by hashing: chain names, ``cali:`` rule IDs, policy-group IDs.

Sources: libcalico-go/lib/hash/unique_id.go (GetLengthLimitedID), felix/generictables/rules.go
(RuleHashes), felix/iptables/renderer.go (rendering for the hash, comment escaping),
felix/rules/policy.go (PolicyChainName), felix/rules/endpoints.go (PolicyGroup.UniqueID),
felix/types/policy_id.go (kind short names, PolicyID.ID/String).
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Iterable

from tracer.model.cluster import Policy
from tracer.policy.felix.builder import FRule
from tracer.policy.felix.versions import Knobs

MAX_CHAIN_NAME_LENGTH = 28       # felix/iptables/table.go MaxChainNameLength
RULE_HASH_LENGTH = 16            # generictables.HashLength
MAX_COMMENT_LENGTH = 256         # iptables/renderer.go maxIptablesCommentLength
# Go's regexp `[^\w @%+=:,./-]`; \w is ASCII-only in Go.
_SHELL_UNSAFE = re.compile(r"[^0-9A-Za-z_ @%+=:,./-]")

KIND_SHORT = {
    "NetworkPolicy": "np", "GlobalNetworkPolicy": "gnp", "StagedNetworkPolicy": "snp",
    "StagedGlobalNetworkPolicy": "sgnp", "StagedKubernetesNetworkPolicy": "sknp",
    "KubernetesNetworkPolicy": "knp", "KubernetesClusterNetworkPolicy": "kcnp",
}


def b64(data: bytes) -> str:
    """Go's base64.RawURLEncoding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def length_limited_id(prefix: str, suffix: str, max_length: int = MAX_CHAIN_NAME_LENGTH) -> str:
    """GetLengthLimitedID: prefix+suffix, or prefix + "_" + SHA-256 of the suffix when too long
    (or exactly max length with a suffix starting "_", which could clash with a hashed name)."""
    suffix = suffix or "_"
    total = len(prefix) + len(suffix)
    if total > max_length or (total == max_length and suffix[0] == "_"):
        digest = b64(hashlib.sha256(suffix.encode()).digest())
        return prefix + "_" + digest[: max_length - 1 - len(prefix)]
    return prefix + suffix


def sanitise_comment(text: str) -> str:
    """renderer.go escapeComment then truncateComment."""
    return _SHELL_UNSAFE.sub("_", text)[:MAX_COMMENT_LENGTH]


def render_for_hash(chain: str, rule: FRule) -> str:
    """RenderAppend(rule, chain, "HASH"): ``-A <chain> HASH <comments> <match> <action>``."""
    parts = ["-A", chain, "HASH"]
    parts += [f'-m comment --comment "{sanitise_comment(c)}"' for c in rule.comments]
    if rule.match.text:
        parts.append(rule.match.text)
    if rule.action is not None:
        parts.append(rule.action.text)
    return " ".join(parts)


def rule_ids(chain: str, rules: Iterable[FRule]) -> list[str]:
    """generictables.RuleHashes: h = SHA-224(chain); each rule h = SHA-224(h || rendered)."""
    digest = hashlib.sha224(chain.encode()).digest()
    ids = []
    for rule in rules:
        digest = hashlib.sha224(digest + render_for_hash(chain, rule).encode()).digest()
        ids.append(b64(digest)[:RULE_HASH_LENGTH])
    return ids


# ----------------------------------------------------------------------------- policies


_KNP_PREFIX = "knp.default."


def base_name(policy: Policy) -> str:
    """The object's own name (the loader may already carry the <=v3.31 ``knp.default.``)."""
    if policy.kind == "KubernetesNetworkPolicy" and policy.name.startswith(_KNP_PREFIX):
        return policy.name[len(_KNP_PREFIX):]
    return policy.name


def felix_policy_name(policy: Policy, knob: Knobs) -> str:
    """The policy name felix carries: v3.29-3.31 prefix k8s policies with ``knp.default.``."""
    if policy.kind == "KubernetesNetworkPolicy":
        return knob.knp_name_prefix + base_name(policy)
    return policy.name


def policy_id(policy: Policy) -> str:
    """v3.32 PolicyID.ID(): ``<kindShort>/<ns>/<name>`` or ``<kindShort>/<name>``."""
    short = KIND_SHORT.get(policy.kind, policy.kind)
    if policy.namespace:
        return f"{short}/{policy.namespace}/{base_name(policy)}"
    return f"{short}/{base_name(policy)}"


def legacy_policy_name(policy: Policy, knob: Knobs) -> str:
    """v3.29-3.31 model.PolicyKey.Name: ``<ns>/<name>`` for namespaced policies."""
    name = felix_policy_name(policy, knob)
    return f"{policy.namespace}/{name}" if policy.namespace else name


def policy_chain_suffix(policy: Policy, knob: Knobs) -> str:
    if knob.policy_id_chain_names:
        return policy_id(policy)
    return f"{policy.tier}/{legacy_policy_name(policy, knob)}"


def policy_chain_name(prefix: str, policy: Policy, knob: Knobs) -> str:
    """PolicyChainName for prefix ``cali-pi-`` / ``cali-po-``."""
    return length_limited_id(prefix, policy_chain_suffix(policy, knob))


def policy_comment(policy: Policy, knob: Knobs, direction: str) -> str:
    """The chain comment on a policy chain's first rule."""
    if knob.uses_kind_comments:
        name = base_name(policy)
        name = f"{policy.namespace}/{name}" if policy.namespace else name
        return f"{policy.kind} {name} {direction}"
    return f"Policy {legacy_policy_name(policy, knob)} {direction}"


def profile_chain_name(prefix: str, profile: str) -> str:
    return length_limited_id(prefix, profile)


def endpoint_chain_name(prefix: str, iface: str) -> str:
    return length_limited_id(prefix, iface)


def policy_group_id(selector: str, direction: str, policies: list[Policy], tier: str,
                    knob: Knobs) -> str:
    """PolicyGroup.UniqueID: base64url(SHA3-224 of newline-terminated lines)[:20].

    v3.32 lines: selector, direction, count, then each ``PolicyID.String()``; v3.29-3.31
    start with the tier and list the policy names.
    """
    lines: list[str] = [tier] if knob.group_hash_has_tier else []
    lines += [selector, direction, str(len(policies))]
    for pol in policies:
        if knob.policy_id_chain_names:
            lines.append(f"{{Name: {base_name(pol)}, Namespace: {pol.namespace or ''}, "
                         f"Kind: {pol.kind}}}")
        else:
            lines.append(legacy_policy_name(pol, knob))
    data = "".join(line + "\n" for line in lines).encode()
    return b64(hashlib.sha3_224(data).digest())[: MAX_CHAIN_NAME_LENGTH - len("cali-gi-")]
