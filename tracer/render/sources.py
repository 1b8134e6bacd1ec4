"""The manifest behind a deciding rule: the policy's YAML as the user wrote it, found through
the provenance the felix renderer attached to the rule and the origin the loader recorded."""

from __future__ import annotations

from dataclasses import dataclass

import yaml

from tracer.model.cluster import Cluster
from tracer.model.loader import read_documents
from tracer.trace.result import PacketTrace


@dataclass(frozen=True)
class PolicySource:
    key: str                           # "KubernetesNetworkPolicy shop/backend-allow-frontend"
    file: str
    text: str                          # the object's YAML


def policy_sources(cluster: Cluster, traces: list[PacketTrace]) -> dict[str, PolicySource]:
    """For each policy that decided one of ``traces``, its manifest (key: see ``policy_key``)."""
    wanted = {policy_key(d.provenance) for t in traces for d in t.deciding
              if d.provenance is not None and d.provenance.policy}
    found = {}
    for policy in cluster.policies:
        key = f"{policy.kind} {policy.key}"
        if key in wanted and key not in found and not policy.origin.file.startswith("<"):
            text = _manifest_text(policy.origin.file, policy.origin.kind, policy.origin.name)
            if text is not None:
                found[key] = PolicySource(key, policy.origin.file, text)
    return found


def policy_key(prov) -> str:
    return f"{prov.policy_kind or 'policy'} {prov.policy}"


def _manifest_text(file: str, kind: str, name: str) -> str | None:
    for doc in read_documents(file):
        if not isinstance(doc, dict) or doc.get("kind") != kind:
            continue
        meta = doc.get("metadata") or {}
        ident = f"{meta['namespace']}/{meta.get('name')}" if meta.get("namespace") else \
            str(meta.get("name"))
        if ident == name:
            return yaml.safe_dump(doc, sort_keys=False)
    return None
