"""A loaded cluster with what every node's assembly shares, computed once: the label indexes
felix's renderer asks (which policies select an endpoint, which endpoints a selector set
holds) and the cluster's routing facts (block owners, borrowed addresses), and the policy evaluator's
index.

Everything here pickles, so a :class:`PreparedCluster` is what the cache keeps
(``tracer.trace.cache``).
"""

from __future__ import annotations

from dataclasses import dataclass

from tracer.model.cluster import Cluster
from tracer.policy.evaluate import PolicyIndex
from tracer.policy.felix import ClusterFacts
from tracer.trace.routes import ClusterRoutes, cluster_routes


@dataclass(frozen=True)
class PreparedCluster:
    cluster: Cluster
    facts: ClusterFacts               # the renderer's label indexes
    routes: ClusterRoutes
    policy_index: PolicyIndex         # the evaluator's (explanations and the matrix)


def prepare(cluster: Cluster) -> PreparedCluster:
    return PreparedCluster(cluster, ClusterFacts(cluster), cluster_routes(cluster),
                           PolicyIndex(cluster))
