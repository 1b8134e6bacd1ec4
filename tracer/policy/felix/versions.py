"""Per-release knobs of felix's iptables rendering (v3.29 ... v3.32) and its mark-bit layout.

Everything that differs between the supported Calico releases is decided here, so the chain
builders read one ``Knobs`` record instead of comparing version strings. Sources (tags of
projectcalico/calico): felix/dataplane/driver.go (mark allocation), felix/rules/policy.go
(chain names, comments, Deny rendering), felix/rules/endpoints.go (end-of-tier comment, policy
group IDs), felix/rules/rule_defs.go (ipset IDs), felix/rules/static.go (DSCP rule).
"""

from __future__ import annotations

from dataclasses import dataclass

from tracer import DEFAULT_CALICO_VERSION
from tracer.errors import InputError, quote
from tracer.model.cluster import Cluster, FelixConfig

SUPPORTED_VERSIONS = ("3.29", "3.30", "3.31", "3.32")


@dataclass(frozen=True)
class Knobs:
    """What one felix release does differently."""

    version: str
    drop_mark: bool                 # v3.30 added MarkDrop: Deny = set drop bit, then DROP
    end_of_tier_names_tier: bool    # "End of tier X. Drop if ..." (v3.30+) vs "Drop if ..."
    policy_id_chain_names: bool     # v3.32: chain suffix = PolicyID.ID() ("knp/ns/name")
    knp_name_prefix: str            # v3.29-3.31 name k8s policies "knp.default.<name>"
    all_pools_set: str              # ipset ID of all IP pools
    dscp_rule: bool                 # v3.31+: mangle POSTROUTING jumps to cali-egress-dscp
    group_hash_has_tier: bool       # v3.29-3.31 hash the tier name into policy-group IDs

    @property
    def uses_kind_comments(self) -> bool:
        """v3.32 comments say ``KubernetesNetworkPolicy ns/name ingress``, older ``Policy ...``."""
        return self.policy_id_chain_names


_KNOBS = {
    "3.29": Knobs("3.29", False, False, False, "knp.default.", "all-ipam-pools", False, True),
    "3.30": Knobs("3.30", True, True, False, "knp.default.", "all-ipam-pools", False, True),
    "3.31": Knobs("3.31", True, True, False, "knp.default.", "all-ipam-pools", True, True),
    "3.32": Knobs("3.32", True, True, True, "", "network-ip-pools", True, False),
}


def resolve_version(cluster: Cluster | None, version: str | None) -> str:
    """The release to render: explicit argument, else FelixConfiguration, else the default.

    Accepts "3.32", "v3.32" and "3.32.1" spellings; anything unsupported is an InputError.
    """
    raw = version or (cluster.felix.calico_version if cluster is not None else None)
    raw = raw or DEFAULT_CALICO_VERSION
    text = str(raw).strip().lstrip("vV")
    short = ".".join(text.split(".")[:2])
    if short not in _KNOBS:
        raise InputError(f"unsupported Calico version {quote(raw)} (supported: "
                         f"{', '.join(SUPPORTED_VERSIONS)})")
    return short


def knobs(version: str) -> Knobs:
    return _KNOBS[resolve_version(None, version)]


@dataclass(frozen=True)
class MarkBits:
    """felix's mark bits. ``pass_`` is the "pass / next tier" bit (``pass`` is a keyword)."""

    accept: int
    pass_: int
    drop: int                       # 0 before v3.30
    scratch0: int
    scratch1: int
    wireguard: int                  # 0 unless WireGuard is enabled
    endpoint: int                   # the rest of the mask (IPVS endpoint marks)

    @property
    def all_calico(self) -> int:
        """rules/static.go allCalicoMarkBits: accept|pass|scratch0|scratch1 (not drop)."""
        return self.accept | self.pass_ | self.scratch0 | self.scratch1


def _lowest_bits(mask: int):
    """markbits.MarkBitsManager: hands out the mask's set bits, lowest first."""
    bit = 1
    while bit <= 0xFFFFFFFF:
        if mask & bit:
            yield bit
        bit <<= 1


def mark_bits(version: str, felix: FelixConfig) -> MarkBits:
    """Allocate marks in felix's order: accept, pass, [drop], scratch0, scratch1, [wireguard]."""
    knob = knobs(version)
    bits = _lowest_bits(felix.iptables_mark_mask & 0xFFFFFFFF)
    try:
        accept, pass_ = next(bits), next(bits)
        drop = next(bits) if knob.drop_mark else 0
        scratch0, scratch1 = next(bits), next(bits)
        wireguard = next(bits) if felix.wireguard_enabled else 0
    except StopIteration:
        raise InputError(f"IptablesMarkMask {felix.iptables_mark_mask:#x} has too few bits "
                         "for felix's marks") from None
    used = accept | pass_ | drop | scratch0 | scratch1 | wireguard
    return MarkBits(accept, pass_, drop, scratch0, scratch1, wireguard,
                    felix.iptables_mark_mask & ~used & 0xFFFFFFFF)
