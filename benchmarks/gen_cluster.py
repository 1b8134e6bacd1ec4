"""Generate a realistic cluster as Kubernetes manifests, to run the CLI on as a user would.

The shape follows what large clusters look like: 50 namespaces (labelled env/team), deployments
of 5 replicas whose pods share app/tier labels and named container ports, 100 pods per node, and
Kubernetes NetworkPolicies whose peers are pod selectors, namespace selectors (with and
without a pod selector) and ipBlocks, on numeric and named ports. One default-deny-ingress per
namespace keeps the policies meaningful. Pods carry their IPs (status.podIP) as the API server
reports them, so nothing depends on allocation order.

Run: .venv/bin/python benchmarks/gen_cluster.py --pods 10000 --policies 10000 --out /tmp/c10k
Writes OUT/cluster.yaml (IPPool, Nodes, Namespaces), OUT/pods.yaml and OUT/policies.yaml, and
prints a pod pair to trace.
"""

from __future__ import annotations

import argparse
import random
from ipaddress import IPv4Address
from pathlib import Path

NAMESPACES = 50
REPLICAS = 5
PODS_PER_NODE = 100
TIERS = ("frontend", "backend", "db", "cache")
PORTS = (("http", 8080, "TCP"), ("metrics", 9090, "TCP"), ("grpc", 50051, "TCP"),
         ("dns", 5353, "UDP"))
POD_BASE = IPv4Address("10.244.0.10")


def _labels(pairs: dict[str, str], indent: str) -> str:
    return "".join(f"{indent}{k}: {v}\n" for k, v in pairs.items())


def cluster_yaml(nodes: int, namespaces: list[str], ns_labels: dict[str, dict]) -> str:
    docs = ["apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: pods\nspec:\n"
            "  cidr: 10.244.0.0/16\n  blockSize: 26\n  ipipMode: Never\n  vxlanMode: Never\n"
            "  natOutgoing: true\n"]
    for n in range(nodes):
        ip = f"10.0.{n // 250}.{n % 250 + 1}"
        docs.append(f"apiVersion: v1\nkind: Node\nmetadata:\n  name: node-{n:03d}\n"
                    f"  labels:\n    kubernetes.io/hostname: node-{n:03d}\n"
                    f"  annotations:\n    projectcalico.org/IPv4Address: {ip}/16\n"
                    f"status:\n  addresses:\n  - type: InternalIP\n    address: {ip}\n")
    for ns in namespaces:
        docs.append(f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n  labels:\n"
                    + _labels(ns_labels[ns], "    "))
    return "---\n".join(docs)


def pod_yaml(name: str, ns: str, node: str, ip: IPv4Address, labels: dict[str, str],
             ports: list[tuple[str, int, str]]) -> str:
    port_lines = "".join(f"    - name: {p}\n      containerPort: {n}\n      protocol: {proto}\n"
                         for p, n, proto in ports)
    return (f"apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {ns}\n"
            f"  labels:\n{_labels(labels, '    ')}spec:\n  nodeName: {node}\n  containers:\n"
            f"  - name: app\n    image: registry.example/app:1.0\n    ports:\n{port_lines}"
            f"status:\n  podIP: {ip}\n")


def _peer(rng: random.Random, apps: list[tuple[str, str]], ns_labels: dict[str, dict]) -> str:
    draw = rng.random()
    ns, app = rng.choice(apps)
    if draw < 0.45:
        return f"    - podSelector:\n        matchLabels:\n          app: {app}\n"
    if draw < 0.7:
        env = ns_labels[ns]["env"]
        return (f"    - namespaceSelector:\n        matchLabels:\n          env: {env}\n"
                f"      podSelector:\n        matchLabels:\n          tier: "
                f"{rng.choice(TIERS)}\n")
    if draw < 0.9:
        return (f"    - namespaceSelector:\n        matchLabels:\n"
                f"          kubernetes.io/metadata.name: {ns}\n")
    return f"    - ipBlock:\n        cidr: 10.{rng.randrange(256)}.0.0/16\n"


def policy_yaml(rng: random.Random, number: int, ns: str, apps_in_ns: list[str],
                apps: list[tuple[str, str]], ns_labels: dict[str, dict]) -> str:
    app = rng.choice(apps_in_ns)
    egress = rng.random() < 0.3
    types = "  - Egress\n" if egress else "  - Ingress\n"
    direction, peer_key = ("egress", "to") if egress else ("ingress", "from")
    rules = []
    for _ in range(rng.randint(1, 3)):
        peers = "".join(_peer(rng, apps, ns_labels) for _ in range(rng.randint(1, 2)))
        name, port, proto = rng.choice(PORTS)
        port_value = name if rng.random() < 0.3 else str(port)
        rules.append(f"  - {peer_key}:\n{peers}    ports:\n    - protocol: {proto}\n"
                     f"      port: {port_value}\n")
    return (f"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n"
            f"  name: pol-{number:05d}\n  namespace: {ns}\nspec:\n  podSelector:\n"
            f"    matchLabels:\n      app: {app}\n  policyTypes:\n{types}  {direction}:\n"
            + "".join(rules))


def default_deny(ns: str) -> str:
    return (f"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n"
            f"  name: default-deny-ingress\n  namespace: {ns}\nspec:\n  podSelector: {{}}\n"
            f"  policyTypes:\n  - Ingress\n")


def generate(out: Path, pods: int, policies: int, nodes: int | None, seed: int) -> tuple[str, str]:
    """Write the manifests; return a (source, destination) pod pair on two different nodes."""
    rng = random.Random(seed)
    nodes = nodes or max(1, -(-pods // PODS_PER_NODE))
    namespaces = [f"ns-{i:02d}" for i in range(NAMESPACES)]
    ns_labels = {ns: {"env": rng.choice(["prod", "staging", "dev"]), "team": rng.choice("abcde")}
                 for ns in namespaces}
    out.mkdir(parents=True, exist_ok=True)
    (out / "cluster.yaml").write_text(cluster_yaml(nodes, namespaces, ns_labels))
    apps_by_ns: dict[str, list[str]] = {ns: [] for ns in namespaces}
    pod_docs, names = [], []
    for number in range(pods):
        dep = number // REPLICAS
        ns = namespaces[dep % NAMESPACES]
        app = f"app-{dep:04d}"
        if not apps_by_ns[ns] or apps_by_ns[ns][-1] != app:
            apps_by_ns[ns].append(app)
        dep_rng = random.Random(seed * 1_000_003 + dep)
        labels = {"app": app, "tier": dep_rng.choice(TIERS),
                  "version": f"v{dep_rng.randint(1, 3)}"}
        ports = dep_rng.sample(PORTS, dep_rng.randint(1, 3))
        node = f"node-{(number * nodes // pods):03d}"
        name = f"{app}-{number % REPLICAS}"
        names.append(f"{ns}/{name}")
        pod_docs.append(pod_yaml(name, ns, node, IPv4Address(int(POD_BASE) + number), labels,
                                 ports))
    (out / "pods.yaml").write_text("---\n".join(pod_docs))
    apps = [(ns, app) for ns, lst in apps_by_ns.items() for app in lst]
    policy_docs = [default_deny(ns) for ns in namespaces if apps_by_ns[ns]]
    populated = [ns for ns in namespaces if apps_by_ns[ns]]
    for number in range(max(0, policies - len(policy_docs))):
        ns = populated[number % len(populated)]
        policy_docs.append(policy_yaml(rng, number, ns, apps_by_ns[ns], apps, ns_labels))
    (out / "policies.yaml").write_text("---\n".join(policy_docs))
    return names[0], names[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=1000)
    parser.add_argument("--policies", type=int, default=1000)
    parser.add_argument("--nodes", type=int, help="default: one per 100 pods")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    src, dst = generate(args.out, args.pods, args.policies, args.nodes, args.seed)
    print(f"wrote {args.out}: trace with --from {src} --to {dst}")


if __name__ == "__main__":
    main()
