"""felix's iptables-mode dataplane for one node, rendered as the typed rule IR.

Public API: ``render_node(cluster, node, version=None) -> Ruleset``, ``mark_bits(version,
felix) -> MarkBits`` and ``SUPPORTED_VERSIONS``.
"""

from tracer.policy.felix.facts import ClusterFacts
from tracer.policy.felix.render import render_node
from tracer.policy.felix.versions import SUPPORTED_VERSIONS, MarkBits, mark_bits

__all__ = ["SUPPORTED_VERSIONS", "ClusterFacts", "MarkBits", "mark_bits", "render_node"]
