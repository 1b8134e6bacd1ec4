"""Reachability matrix cost: set-based (equivalence classes + bitsets) vs per-pair evaluation.

Generates a realistic random cluster directly in Calico backend form (what the loader
produces): namespaces with env/team labels, deployments whose replicas share app/tier/role
labels and named ports, Kubernetes NetworkPolicies (pod, namespace and ipBlock peers; numeric
and named ports), Calico NetworkPolicies in the default tier and GlobalNetworkPolicies in a
"security" tier (Pass/Deny/Log, some staged), and global network sets, one of which covers the
pod CIDR. Then times ``compute_matrix`` (median of --runs, each on a fresh index) and the
naive ``evaluate_connection`` per ordered pair, sampled and extrapolated when there are too
many pairs.

Run: .venv/bin/python benchmarks/bench_matrix.py --pods 1000 --policies 1000
"""

from __future__ import annotations

import argparse
import copy
import random
import statistics
import time
from ipaddress import IPv4Address, IPv4Network

from tracer.model.cluster import (
    Cluster,
    ContainerPort,
    EntityRule,
    NetworkSet,
    Pod,
    Policy,
    PortSpec,
    Profile,
    Rule,
    Tier,
    WorkloadEndpoint,
)
from tracer.policy.evaluate import evaluate_connection, index_for
from tracer.policy.matrix import Probe, compute_matrix, matrix_pods

NS = "projectcalico.org/namespace"
K8S = "projectcalico.org/orchestrator == 'k8s'"
TIERS_ = ("frontend", "backend", "db", "cache")
ROLES = ("api", "worker", "web")
NAMED_PORTS = (ContainerPort(8080, "TCP", "http"), ContainerPort(9090, "TCP", "metrics"),
               ContainerPort(50051, "TCP", "grpc"), ContainerPort(5353, "UDP", "dns"))


def generate(pods: int, policies: int, seed: int, replicas: int = 4) -> Cluster:
    rng = random.Random(seed)
    cluster = Cluster()
    namespaces = [f"ns-{i:02d}" for i in range(max(2, pods // 50))]
    ns_labels = {ns: {"env": rng.choice(["prod", "staging", "dev"]),
                      "team": rng.choice("abcde")} for ns in namespaces}
    for ns in namespaces:
        applied = {f"pcns.{k}": v for k, v in ns_labels[ns].items()}
        applied["pcns.projectcalico.org/name"] = ns
        cluster.profiles[f"kns.{ns}"] = Profile(f"kns.{ns}", applied, (Rule("Allow"),),
                                                (Rule("Allow"),))
        for sa in ("default", "app", "monitoring"):
            cluster.profiles[f"ksa.{ns}.{sa}"] = Profile(f"ksa.{ns}.{sa}",
                                                         {"pcsa.projectcalico.org/name": sa})
    deployments = _deployments(rng, namespaces, pods, replicas)
    for number in range(pods):
        ns, labels, sa, ports = deployments[number % len(deployments)]
        address = IPv4Address(int(IPv4Address("10.244.0.10")) + number)
        _add_pod(cluster, ns, f"pod-{number:04d}", address, labels, sa, ports, ns_labels[ns])
    cluster.tiers["security"] = Tier("security", 100.0, "Deny")
    cluster.network_sets.extend([
        NetworkSet("cluster-pods", None, (IPv4Network("10.244.0.0/16"),), {"scope": "internal"}),
        NetworkSet("partners", None, (IPv4Network("198.51.100.0/24"),), {"scope": "partner"}),
        NetworkSet("blocked", None, (IPv4Network("203.0.113.0/24"),), {"scope": "blocked"}),
    ])
    apps = sorted({(d[0], d[1]["app"]) for d in deployments})
    for number in range(policies):
        draw = rng.random()
        if draw < 0.7:
            cluster.policies.append(_k8s_policy(rng, number, apps, namespaces))
        elif draw < 0.9:
            cluster.policies.append(_calico_policy(rng, number, apps))
        else:
            cluster.policies.append(_global_policy(rng, number))
    return cluster


def _deployments(rng: random.Random, namespaces: list[str], pods: int, replicas: int) -> list:
    result = []
    for number in range(max(1, pods // replicas)):
        ns = rng.choice(namespaces)
        labels = {"app": f"app-{number:03d}", "tier": rng.choice(TIERS_),
                  "role": rng.choice(ROLES), "version": rng.choice(["v1", "v2"]),
                  "pod-template-hash": f"{rng.getrandbits(32):08x}"}
        ports = tuple(rng.sample(NAMED_PORTS, rng.randint(0, 2)))
        result.append((ns, labels, rng.choice(["default", "app", "monitoring"]), ports))
    return result


def _add_pod(cluster: Cluster, ns: str, name: str, ip: IPv4Address, labels: dict, sa: str,
             ports: tuple, ns_labels: dict) -> None:
    pod = Pod(ns, name, f"node-{int(ip) % 10}", ip, dict(labels), sa, ports)
    full = {f"pcns.{k}": v for k, v in ns_labels.items()}
    full["pcns.projectcalico.org/name"] = ns
    full["pcsa.projectcalico.org/name"] = sa
    full.update(labels)
    full.update({NS: ns, "projectcalico.org/orchestrator": "k8s",
                 "projectcalico.org/serviceaccount": sa})
    cluster.pods[pod.key] = pod
    cluster.endpoints[pod.key] = WorkloadEndpoint(pod, "cali0", full,
                                                  (f"kns.{ns}", f"ksa.{ns}.{sa}"))


def _ports(rng: random.Random) -> tuple[PortSpec, ...]:
    choice = rng.random()
    if choice < 0.4:
        return (PortSpec(80, 80),)
    if choice < 0.6:
        return (PortSpec(8000, 8999),)
    if choice < 0.8:
        return (PortSpec(name=rng.choice(["http", "grpc", "metrics"])),)
    return ()


def _k8s_policy(rng: random.Random, number: int, apps: list, namespaces: list[str]) -> Policy:
    ns, app = rng.choice(apps)
    selector = f"({K8S} && app == '{app}') && {NS} == '{ns}'"
    rules = []
    for _ in range(rng.randint(0, 3)):
        peer = rng.random()
        if peer < 0.5:
            other = rng.choice([a for n, a in apps if n == ns] or [app])
            source = EntityRule(selector=f"({NS} == '{ns}') && ({K8S} && app == '{other}')")
        elif peer < 0.8:
            env = rng.choice(["prod", "staging", "dev"])
            source = EntityRule(selector=f"(pcns.env == '{env}') && ({K8S} && "
                                         f"tier == '{rng.choice(TIERS_)}')")
        else:
            source = EntityRule(nets=(IPv4Network("10.0.0.0/8"),),
                                not_nets=(IPv4Network("10.244.0.0/16"),))
        ports = _ports(rng)
        rules.append(Rule("Allow", protocol="TCP" if ports else None, source=source,
                          destination=EntityRule(ports=ports)))
    types = rng.choice([("ingress",), ("ingress",), ("ingress", "egress")])
    egress = (Rule("Allow", destination=EntityRule(selector=f"{NS} == '{ns}'")),
              Rule("Allow", protocol="UDP", destination=EntityRule(ports=(PortSpec(53, 53),))))
    return Policy("KubernetesNetworkPolicy", f"np-{number:04d}", ns, "default", 1000.0,
                  selector, types, tuple(rules), egress if "egress" in types else ())


def _calico_policy(rng: random.Random, number: int, apps: list) -> Policy:
    ns, app = rng.choice(apps)
    role = rng.choice(ROLES)
    selector = f"(app == '{app}' || role == '{role}') && {NS} == '{ns}'"
    rules = [Rule("Log", protocol="TCP", destination=EntityRule(ports=(PortSpec(22, 22),))),
             Rule(rng.choice(["Allow", "Deny"]), protocol="TCP",
                  source=EntityRule(selector=f"{NS} == '{ns}' && tier in "
                                             f"{{'{rng.choice(TIERS_)}', 'cache'}}"),
                  destination=EntityRule(ports=_ports(rng) or (PortSpec(443, 443),)))]
    kind = "StagedNetworkPolicy" if rng.random() < 0.1 else "NetworkPolicy"
    return Policy(kind, f"cnp-{number:04d}", ns, "default", rng.choice([None, 100.0, 500.0]),
                  selector, ("ingress",), tuple(rules))


def _global_policy(rng: random.Random, number: int) -> Policy:
    tier = rng.choice(TIERS_)
    env = rng.choice(["prod", "staging", "dev"])
    rules = (Rule("Deny", source=EntityRule(selector="scope == 'blocked'")),
             Rule("Pass", source=EntityRule(selector=f"pcns.env == '{env}' || "
                                                     f"scope == 'partner'")),
             Rule(rng.choice(["Deny", "Pass", "Pass"]), protocol="TCP",
                  destination=EntityRule(not_ports=(PortSpec(80, 80), PortSpec(443, 443)))))
    kind = "StagedGlobalNetworkPolicy" if rng.random() < 0.2 else "GlobalNetworkPolicy"
    return Policy(kind, f"gnp-{number:04d}", None, "security", float(rng.randint(1, 50)),
                  f"tier == '{tier}' && has(role)", ("ingress",), rules)


# --------------------------------------------------------------------------------- timing


def time_set_based(cluster: Cluster, probe: Probe, runs: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(runs):
        fresh = copy.copy(cluster)          # new object: nothing cached from the last run
        start = time.perf_counter()
        result = compute_matrix(fresh, probe)
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def time_naive(cluster: Cluster, probe: Probe, sample: int, runs: int, seed: int):
    pods = matrix_pods(cluster)
    pairs = [(s, d) for s in pods for d in pods]
    total = len(pairs)
    if sample < total:
        pairs = random.Random(seed).sample(pairs, sample)
    totals, verdicts = [], {}
    for _ in range(runs):
        fresh = copy.copy(cluster)
        # Once per cluster: the index and each endpoint's applicable policies (cached, so
        # sampling would otherwise charge this to the sampled pairs and extrapolate it).
        start = time.perf_counter()
        index = index_for(fresh)
        for key in index.workloads:
            index.applicable(key, "ingress")
            index.applicable(key, "egress")
        warm = time.perf_counter()
        verdicts = {(s.key, d.key): evaluate_connection(fresh, probe.flow(s, d)).allowed
                    for s, d in pairs}
        done = time.perf_counter()
        totals.append((warm - start) + (done - warm) / len(pairs) * total)
    return statistics.median(totals), len(pairs), total, verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=1000)
    parser.add_argument("--policies", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--naive-runs", type=int, default=3)
    parser.add_argument("--sample", type=int, default=20000, help="pairs timed for naive")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--replicas", type=int, default=4, help="pods per deployment")
    parser.add_argument("--protocol", default="tcp")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()

    cluster = generate(args.pods, args.policies, args.seed, args.replicas)
    probe = Probe.make(args.protocol, args.port)
    set_time, result = time_set_based(cluster, probe, args.runs)
    naive_time, timed, total, verdicts = time_naive(cluster, probe, args.sample,
                                                    args.naive_runs, args.seed)
    mismatches = sum(result.is_allowed(s, d) != ok for (s, d), ok in verdicts.items())
    allowed = int(result.allowed.sum())
    print(f"cluster: {args.pods} pods ({args.replicas} per deployment), {args.policies} "
          f"policies, seed {args.seed}; "
          f"probe {args.protocol}/{args.port}")
    print(f"classes: {result.classes}; allowed pairs: {allowed} of {total}")
    print(f"set-based compute_matrix: median {set_time:.3f} s over {args.runs} runs")
    sampled = "" if timed == total else f" (timed {timed} sampled pairs, extrapolated)"
    print(f"naive evaluate_connection per pair: {naive_time:.1f} s for {total} pairs{sampled}, "
          f"median of {args.naive_runs} runs")
    print(f"speed-up: {naive_time / set_time:.0f}x; mismatches on checked pairs: {mismatches}")


if __name__ == "__main__":
    main()
