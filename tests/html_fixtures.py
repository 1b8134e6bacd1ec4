"""Clusters made up for the HTML tests (a large one for the heatmap)."""

from __future__ import annotations

from pathlib import Path

import yaml


def write_big_cluster(directory: Path, *, namespaces: int = 8, pods_per_namespace: int = 25,
                      nodes: int = 4) -> Path:
    """``namespaces`` x ``pods_per_namespace`` pods over ``nodes`` nodes; each namespace has a
    default deny and lets pods of the same app in, and namespace ns-0 is open to all."""
    docs: list[dict] = []
    for n in range(nodes):
        docs.append({"apiVersion": "v1", "kind": "Node",
                     "metadata": {"name": f"node-{n + 1}",
                                  "annotations": {"projectcalico.org/IPv4Address":
                                                  f"10.0.0.{n + 1}/24"}},
                     "status": {"addresses": [{"type": "InternalIP",
                                               "address": f"10.0.0.{n + 1}"}]}})
    docs.append({"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
                 "metadata": {"name": "pool"},
                 "spec": {"cidr": "10.244.0.0/16", "blockSize": 24, "ipipMode": "Never",
                          "vxlanMode": "Always", "natOutgoing": True}})
    for k in range(namespaces):
        ns = f"ns-{k}"
        docs.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        for p in range(pods_per_namespace):
            docs.append({"apiVersion": "v1", "kind": "Pod",
                         "metadata": {"name": f"pod-{p:02d}", "namespace": ns,
                                      "labels": {"app": f"app-{p % 5}"}},
                         "spec": {"nodeName": f"node-{(k + p) % nodes + 1}",
                                  "containers": [{"name": "c", "image": "nginx"}]}})
        if k == 0:
            continue
        docs.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                     "metadata": {"name": "same-app", "namespace": ns},
                     "spec": {"podSelector": {}, "policyTypes": ["Ingress"],
                              "ingress": [{"from": [{"podSelector": {
                                  "matchLabels": {"app": f"app-{k % 5}"}}}]}]}})
    path = directory / "cluster.yaml"
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return directory
