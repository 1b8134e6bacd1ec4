"""Kubernetes objects -> Calico backend form, as libcalico-go converts them for felix.

Sources: ``libcalico-go/lib/backend/k8s/conversion/conversion.go`` (``K8sNetworkPolicyToCalico``,
``k8sSelectorToCalico``, ``k8sRuleToCalico``, ``SimplifyPorts``, ``NamespaceToProfile``,
``ServiceAccountToProfile``), ``workload_endpoint_default.go`` (``podToDefaultWorkloadEndpoint``)
and the update processors (``convert_calico.backend_rule``) that add the namespace terms.
"""

from __future__ import annotations

import hashlib
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, ip_address, ip_interface
from typing import Any

from tracer.errors import quote
from tracer.model.cluster import (
    ContainerPort, EndpointSlice, EntityRule, Namespace, Node, Pod, Policy, PortSpec, Profile,
    Rule, Service, ServiceAccount, ServicePort, WorkloadEndpoint)
from tracer.model.names import workload_interface_name
from tracer.model.convert_calico import (
    NAMESPACE_LABEL, NAMESPACE_PREFIX, SERVICE_ACCOUNT_LABEL, SERVICE_ACCOUNT_PREFIX, Ctx,
    backend_rule, check_selector, parse_net, parse_protocol)

ORCHESTRATOR_LABEL = "projectcalico.org/orchestrator"
NAME_LABEL = "projectcalico.org/name"
NAMESPACE_PROFILE_PREFIX = "kns."
SERVICE_ACCOUNT_PROFILE_PREFIX = "ksa."
KNP_NAME_PREFIX = "knp.default."        # <= v3.31 (libcalico-go/lib/names/policy.go)
LABEL_SELECTOR_OPS = ("In", "NotIn", "Exists", "DoesNotExist")


# ------------------------------------------------------------------------------ selectors


def k8s_selector(raw: Any, *, pod: bool, field_path: str, ctx: Ctx) -> str:
    """``k8sSelectorToCalico``: the exact string shape the Go code prints."""
    terms = [f"{ORCHESTRATOR_LABEL} == 'k8s'"] if pod else []
    if raw is None:
        return " && ".join(terms)
    if not isinstance(raw, dict):
        raise ctx.error(f"{field_path}: expected a label selector mapping")
    match_labels = raw.get("matchLabels") or {}
    expressions = raw.get("matchExpressions") or []
    if not pod and not match_labels and not expressions:
        return "all()"          # present but empty namespaceSelector: every namespace
    if not isinstance(match_labels, dict):
        raise ctx.error(f"{field_path}.matchLabels: expected a mapping")
    for key in sorted(match_labels):
        terms.append(f"{key} == '{match_labels[key]}'")
    for index, expr in enumerate(expressions):
        where = f"{field_path}.matchExpressions[{index}]"
        operator, key = expr.get("operator"), expr.get("key")
        values = [str(v) for v in expr.get("values") or ()]
        if operator not in LABEL_SELECTOR_OPS or not key:
            raise ctx.error(f"{where}: operator must be one of {', '.join(LABEL_SELECTOR_OPS)} "
                            f"with a key, got {quote(operator)}")
        if operator in ("In", "NotIn") and not values:
            raise ctx.error(f"{where}: operator {operator} needs values")
        listed = "', '".join(values)
        terms.append({"In": f"{key} in {{ '{listed}' }}",
                      "NotIn": f"{key} not in {{ '{listed}' }}",
                      "Exists": f"has({key})",
                      "DoesNotExist": f"! has({key})"}[operator])
    text = " && ".join(terms)
    if text:
        check_selector(text, field_path, ctx)
    return text


# ------------------------------------------------------------------------------ ports


def _k8s_port(raw: dict, field_path: str, ctx: Ctx) -> tuple[str, PortSpec | None]:
    """One NetworkPolicyPort -> (protocol, port or None for all ports); TCP by default."""
    protocol = parse_protocol(raw.get("protocol") or "TCP", f"{field_path}.protocol", ctx)
    if protocol not in ("TCP", "UDP", "SCTP"):
        raise ctx.error(f"{field_path}.protocol: NetworkPolicy allows TCP, UDP or SCTP, "
                        f"got {quote(raw.get('protocol'))}")
    port, end = raw.get("port"), raw.get("endPort")
    if port is None:
        if end is not None:
            raise ctx.error(f"{field_path}.endPort: endPort needs a numeric port")
        return protocol, None
    if isinstance(port, int) and not isinstance(port, bool):
        last = port if end is None else end
        if not isinstance(last, int) or not 1 <= port <= last <= 65535:
            raise ctx.error(f"{field_path}: bad port range {port}-{end}")
        return protocol, PortSpec(first=port, last=last)
    text = str(port)
    if text.isdigit():
        return _k8s_port({**raw, "port": int(text)}, field_path, ctx)
    if end is not None:
        raise ctx.error(f"{field_path}.endPort: endPort cannot be used with a named port")
    return protocol, PortSpec(name=text)


def simplify_ports(ports: list[PortSpec]) -> tuple[PortSpec, ...]:
    """``SimplifyPorts``: named ports first as given, numeric ports merged into ranges."""
    if len(ports) <= 1:
        return tuple(ports)
    named = [p for p in ports if p.is_named]
    numbers = sorted({n for p in ports if not p.is_named for n in range(p.first, p.last + 1)})
    if len(numbers) <= 1:
        return tuple(ports)
    ranges: list[PortSpec] = []
    for number in numbers:
        if ranges and number == ranges[-1].last + 1:
            ranges[-1] = PortSpec(first=ranges[-1].first, last=number)
        else:
            ranges.append(PortSpec(first=number, last=number))
    return tuple(named + ranges)


def _group_ports(raw_ports: list, field_path: str, ctx: Ctx) -> dict[str, list[PortSpec] | None]:
    """Ports grouped by protocol; ``{"": None}`` when any entry allows everything."""
    if not raw_ports:
        return {"": None}
    grouped: dict[str, list[PortSpec] | None] = {}
    for index, raw in enumerate(raw_ports):
        raw = raw or {}
        protocol, port = _k8s_port(raw, f"{field_path}[{index}]", ctx)
        if port is None:
            grouped[protocol] = None            # protocol with no port: all its ports
        elif protocol not in grouped or grouped[protocol]:
            grouped.setdefault(protocol, []).append(port)  # type: ignore[union-attr]
    return grouped


# ------------------------------------------------------------------------------ rules


def _peer(raw: Any, field_path: str, ctx: Ctx) -> EntityRule | None:
    """``k8sPeerToCalicoFields`` -> API-form EntityRule (no ports yet); None for an IPv6
    ipBlock, which felix renders for IPv6 only (the model is IPv4)."""
    if raw is None:
        return EntityRule()
    if not isinstance(raw, dict):
        raise ctx.error(f"{field_path}: expected a peer mapping")
    block = raw.get("ipBlock")
    if block is not None:
        if raw.get("podSelector") is not None or raw.get("namespaceSelector") is not None:
            raise ctx.error(f"{field_path}: ipBlock cannot be combined with selectors")
        cidr = parse_net(block.get("cidr"), f"{field_path}.ipBlock.cidr", ctx)
        excepts = [parse_net(e, f"{field_path}.ipBlock.except[{i}]", ctx)
                   for i, e in enumerate(block.get("except") or ())]
        for index, exc in enumerate(excepts):
            if exc.version != cidr.version or not exc.subnet_of(cidr):   # type: ignore[arg-type]
                raise ctx.error(f"{field_path}.ipBlock.except[{index}]: {exc} is not inside "
                                f"{cidr}")
        if not isinstance(cidr, IPv4Network):
            return None
        return EntityRule(nets=(cidr,), not_nets=tuple(excepts))          # type: ignore[arg-type]
    pod_sel = k8s_selector(raw.get("podSelector"), pod=True, field_path=f"{field_path}.podSelector",
                           ctx=ctx)
    ns_raw = raw.get("namespaceSelector")
    ns_sel = k8s_selector(ns_raw, pod=False, field_path=f"{field_path}.namespaceSelector",
                          ctx=ctx) if ns_raw is not None else None
    return EntityRule(selector=pod_sel, namespace_selector=ns_sel or None)


def k8s_rules(raw_rules: Any, *, ingress: bool, namespace: str, field_path: str,
              ctx: Ctx) -> tuple[Rule, ...]:
    """``k8sRuleToCalico`` for every rule of a direction, then the backend rewrite."""
    if raw_rules is None:
        return ()
    if not isinstance(raw_rules, list):
        raise ctx.error(f"{field_path}: expected a list of rules")
    peer_key = "from" if ingress else "to"
    out: list[Rule] = []
    for index, raw in enumerate(raw_rules):
        where = f"{field_path}[{index}]"
        raw = raw or {}
        peers: list[EntityRule | None] = [
            _peer(p, f"{where}.{peer_key}[{i}]", ctx)
            for i, p in enumerate(raw.get(peer_key) or ())] or [EntityRule()]
        grouped = _group_ports(raw.get("ports") or [], f"{where}.ports", ctx)
        for protocol in sorted(grouped):
            ports = simplify_ports(grouped[protocol] or [])
            for peer in peers:
                if peer is None:
                    continue
                rule = _rule(protocol or None, ports, peer, ingress)
                out.append(backend_rule(rule, namespace, where, ctx))
    return tuple(out)


def _rule(protocol: str | None, ports: tuple[PortSpec, ...], peer: EntityRule,
          ingress: bool) -> Rule:
    if ingress:
        return Rule(action="Allow", protocol=protocol, source=peer,
                    destination=EntityRule(ports=ports))
    return Rule(action="Allow", protocol=protocol,
                destination=EntityRule(ports=ports, selector=peer.selector,
                                       namespace_selector=peer.namespace_selector,
                                       nets=peer.nets, not_nets=peer.not_nets))


# ------------------------------------------------------------------------------ policy


def k8s_policy_name(name: str, calico_version: tuple[int, int]) -> str:
    return name if calico_version >= (3, 32) else KNP_NAME_PREFIX + name


def network_policy(name: str, namespace: str, spec: dict, ctx: Ctx, *,
                   kind: str = "KubernetesNetworkPolicy") -> Policy:
    """``K8sNetworkPolicyToCalico`` + ``ConvertNetworkPolicyV3ToV1Value``."""
    ingress = k8s_rules(spec.get("ingress"), ingress=True, namespace=namespace,
                        field_path="spec.ingress", ctx=ctx)
    egress = k8s_rules(spec.get("egress"), ingress=False, namespace=namespace,
                       field_path="spec.egress", ctx=ctx)
    types: list[str] = []
    raw_types = spec.get("policyTypes")
    if raw_types is None:
        # The API server defaults policyTypes: Ingress, plus Egress when egress rules exist.
        raw_types = ["Ingress"] + (["Egress"] if spec.get("egress") else [])
    for index, value in enumerate(raw_types):
        if value not in ("Ingress", "Egress"):
            raise ctx.error(f"spec.policyTypes[{index}]: expected Ingress or Egress, "
                            f"got {quote(value)}")
    if "Ingress" in raw_types:
        types.append("ingress")
    if "Egress" in raw_types:
        types.append("egress")
    elif egress:
        ctx.warn("egress rules but policyTypes lacks Egress: the egress rules are not enforced")
    if not types:
        types.append("ingress")      # conversion.go: no types means Ingress only
    selector = k8s_selector(spec.get("podSelector") or {}, pod=True,
                            field_path="spec.podSelector", ctx=ctx)
    return Policy(kind=kind, name=k8s_policy_name(name, ctx.calico_version), namespace=namespace,
                  tier="default", order=1000.0,
                  selector=f"({selector}) && {NAMESPACE_LABEL} == '{namespace}'",
                  types=tuple(types), ingress=ingress, egress=egress, origin=ctx.origin)


# ------------------------------------------------------------------------------ profiles


def namespace_profile(ns: Namespace) -> Profile:
    """``NamespaceToProfile``: allow-all rules and pcns.-prefixed labels."""
    labels = {NAMESPACE_PREFIX + k: v for k, v in ns.labels.items()}
    labels[NAMESPACE_PREFIX + NAME_LABEL] = ns.name
    return Profile(name=NAMESPACE_PROFILE_PREFIX + ns.name, labels_to_apply=labels,
                   ingress=(Rule(action="Allow"),), egress=(Rule(action="Allow"),),
                   origin=ns.origin)


def service_account_profile_name(namespace: str, name: str) -> str:
    return f"{SERVICE_ACCOUNT_PROFILE_PREFIX}{namespace or 'default'}.{name}"


def service_account_profile(sa: ServiceAccount) -> Profile:
    """``ServiceAccountToProfile``: no rules, pcsa.-prefixed labels."""
    labels = {SERVICE_ACCOUNT_PREFIX + k: v for k, v in sa.labels.items()}
    labels[SERVICE_ACCOUNT_PREFIX + NAME_LABEL] = sa.name
    return Profile(name=service_account_profile_name(sa.namespace, sa.name),
                   labels_to_apply=labels, origin=sa.origin)


def inherited_labels(own: dict[str, str], profiles: list[Profile]) -> dict[str, str]:
    """felix's label index: own labels win, then parents in profile order."""
    merged: dict[str, str] = {}
    for parent in reversed(profiles):
        merged.update(parent.labels_to_apply)
    merged.update(own)
    return merged


def workload_endpoint(pod: Pod, profiles: dict[str, Profile], interface_prefix: str
                      ) -> WorkloadEndpoint:
    """``podToDefaultWorkloadEndpoint`` with the profile labels felix inherits."""
    labels = dict(pod.labels)
    labels[NAMESPACE_LABEL] = pod.namespace
    labels[ORCHESTRATOR_LABEL] = "k8s"
    names = [NAMESPACE_PROFILE_PREFIX + pod.namespace]
    if pod.service_account:
        names.append(service_account_profile_name(pod.namespace, pod.service_account))
        if len(pod.service_account) < 63:
            labels[SERVICE_ACCOUNT_LABEL] = pod.service_account
    parents = [profiles[n] for n in names if n in profiles]
    return WorkloadEndpoint(pod=pod, interface=workload_interface_name(
        pod.namespace, pod.name, interface_prefix), labels=inherited_labels(labels, parents),
        profiles=tuple(names))


# ------------------------------------------------------------------------------ pods


FINISHED_PHASES = ("Succeeded", "Failed", "Completed")
POD_IP_ANNOTATIONS = ("cni.projectcalico.org/podIPs", "cni.projectcalico.org/podIP")


def pod(doc: dict, namespace: str, nodes: dict[str, Node], ctx: Ctx) -> tuple[Pod, bool] | None:
    """A Pod (and whether its IP was given); None for a finished pod, which owns no IP.

    The IP comes from ``status.podIPs``/``podIP`` or Calico's annotations, as ``getPodIPs``
    reads them; without one the caller allocates it. Host-networked pods take the node's IP.
    """
    meta, spec, status = doc.get("metadata") or {}, doc.get("spec") or {}, doc.get("status") or {}
    name = str(meta["name"])
    if status.get("phase") in FINISHED_PHASES:
        ctx.warn(f"phase {status['phase']}: the pod no longer owns an IP; skipped")
        return None
    node_name = spec.get("nodeName")
    if not node_name:
        node_name = sorted(nodes)[0]
        ctx.warn(f"spec.nodeName not set (pod not scheduled); placed on node {quote(node_name)}")
    if node_name not in nodes:
        raise ctx.error(f"spec.nodeName: node {quote(node_name)} does not exist")
    host_network = bool(spec.get("hostNetwork"))
    ip = nodes[node_name].address.ip if host_network else _pod_ip(meta, status, ctx)
    account = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
    result = Pod(namespace=namespace, name=name, node=node_name,
                 ip=ip or IPv4Address(0), labels=dict(meta.get("labels") or {}),
                 service_account=str(account), ports=_container_ports(spec, ctx),
                 host_network=host_network, origin=ctx.origin)
    return result, ip is not None


def _pod_ip(meta: dict, status: dict, ctx: Ctx) -> IPv4Address | None:
    candidates: list[tuple[str, str]] = []
    if status.get("podIPs"):
        candidates = [("status.podIPs", str((entry or {}).get("ip") or ""))
                      for entry in status["podIPs"]]
    elif status.get("podIP"):
        candidates = [("status.podIP", str(status["podIP"]))]
    else:
        annotations = meta.get("annotations") or {}
        for key in POD_IP_ANNOTATIONS:
            if annotations.get(key):
                candidates = [(f"metadata.annotations[{key}]", v.strip())
                              for v in annotations[key].split(",")]
                break
    for where, text in candidates:
        try:
            parsed = ip_interface(text).ip
        except ValueError:
            raise ctx.error(f"{where}: bad pod IP {quote(text)}") from None
        if isinstance(parsed, IPv4Address):
            return parsed
    return None


def _container_ports(spec: dict, ctx: Ctx) -> tuple[ContainerPort, ...]:
    """``appendEndpointPorts``: ports with a name (or a hostPort), containers then init."""
    ports: list[ContainerPort] = []
    for group in ("containers", "initContainers"):
        for c_index, container in enumerate(spec.get(group) or ()):
            for p_index, raw in enumerate((container or {}).get("ports") or ()):
                where = f"spec.{group}[{c_index}].ports[{p_index}]"
                number = raw.get("containerPort")
                if not isinstance(number, int) or not 0 <= number <= 65535:
                    raise ctx.error(f"{where}.containerPort: expected a port number, "
                                    f"got {quote(number)}")
                if not number or not (raw.get("hostPort") or raw.get("name")):
                    continue
                protocol = str(raw.get("protocol") or "TCP")
                if protocol not in ("TCP", "UDP", "SCTP"):
                    continue          # libcalico-go ignores ports with other protocols
                ports.append(ContainerPort(port=number, protocol=protocol,
                                           name=raw.get("name") or None))
    return tuple(ports)


# ------------------------------------------------------------------------------ nodes

NODE_IPV4_ANNOTATION = "projectcalico.org/IPv4Address"
NODE_ANNOTATIONS = {
    "ipip_tunnel_address": "projectcalico.org/IPv4IPIPTunnelAddr",
    "vxlan_tunnel_address": "projectcalico.org/IPv4VXLANTunnelAddr",
    "wireguard_interface_address": "projectcalico.org/IPv4WireguardInterfaceAddr",
}


def vxlan_mac_for_node(node_name: str) -> str:
    """felix/calc/vxlan_resolver.go ``vtepMACForHost``: "f" + first 5 bytes of SHA-1(name)."""
    digest = hashlib.sha1(node_name.encode()).digest()
    return ":".join(f"{b:02x}" for b in b"f" + digest[:5])


def node(k8s_doc: dict | None, calico_doc: dict | None, ctx: Ctx) -> Node:
    """A node from its v1 Node (Calico annotations) and/or projectcalico.org/v3 Node."""
    k8s_meta = (k8s_doc or {}).get("metadata") or {}
    annotations = k8s_meta.get("annotations") or {}
    calico_spec = (calico_doc or {}).get("spec") or {}
    calico_status = (calico_doc or {}).get("status") or {}
    bgp = calico_spec.get("bgp") or {}
    wireguard = calico_spec.get("wireguard") or {}
    name = str(k8s_meta.get("name") or ((calico_doc or {}).get("metadata") or {}).get("name"))
    labels = dict(k8s_meta.get("labels") or
                  ((calico_doc or {}).get("metadata") or {}).get("labels") or {})

    def pick(spec_value: Any, annotation: str, field_path: str) -> IPv4Address | None:
        text = spec_value or annotations.get(annotation)
        if not text:
            return None
        try:
            parsed = ip_interface(str(text)).ip
        except ValueError:
            raise ctx.error(f"{field_path}: bad address {quote(text)}") from None
        return parsed if isinstance(parsed, IPv4Address) else None

    return Node(
        name=name, address=_node_address(bgp.get("ipv4Address") or
                                         annotations.get(NODE_IPV4_ANNOTATION),
                                         k8s_doc, calico_spec, ctx),
        labels=labels,
        ipip_tunnel_address=pick(bgp.get("ipv4IPIPTunnelAddr"),
                                 NODE_ANNOTATIONS["ipip_tunnel_address"],
                                 "spec.bgp.ipv4IPIPTunnelAddr"),
        vxlan_tunnel_address=pick(calico_spec.get("ipv4VXLANTunnelAddr"),
                                  NODE_ANNOTATIONS["vxlan_tunnel_address"],
                                  "spec.ipv4VXLANTunnelAddr"),
        vxlan_tunnel_mac=(calico_spec.get("vxlanTunnelMACAddr")
                          or annotations.get("projectcalico.org/VXLANTunnelMACAddr") or None),
        wireguard_public_key=(calico_status.get("wireguardPublicKey")
                              or annotations.get("projectcalico.org/WireguardPublicKey") or None),
        wireguard_interface_address=pick(wireguard.get("interfaceIPv4Address"),
                                         NODE_ANNOTATIONS["wireguard_interface_address"],
                                         "spec.wireguard.interfaceIPv4Address"),
        origin=ctx.origin)


def _node_address(calico_text: Any, k8s_doc: dict | None, calico_spec: dict,
                  ctx: Ctx) -> IPv4Interface:
    if not calico_text:
        for entry in calico_spec.get("addresses") or ():
            if (entry or {}).get("type") == "CalicoNodeIP" and "/" in str(entry.get("address")):
                calico_text = entry["address"]
                break
    if calico_text:
        text = str(calico_text)
        if "/" not in text:
            ctx.warn(f"node address {text} has no prefix length; assumed /24")
            text += "/24"
        try:
            address = ip_interface(text)
        except ValueError:
            raise ctx.error(f"bad node address {quote(calico_text)}") from None
        if isinstance(address, IPv4Interface):
            return address
    for entry in ((k8s_doc or {}).get("status") or {}).get("addresses") or ():
        if (entry or {}).get("type") == "InternalIP":
            try:
                address = ip_interface(f"{entry.get('address')}/24")
            except ValueError:
                raise ctx.error(f"status.addresses: bad InternalIP {quote(entry.get('address'))}") \
                    from None
            if isinstance(address, IPv4Interface):
                ctx.warn(f"no {NODE_IPV4_ANNOTATION} annotation; using InternalIP "
                         f"{address.ip} with an assumed /24")
                return address
    raise ctx.error(f"node has no IPv4 address (annotation {NODE_IPV4_ANNOTATION}, "
                    f"spec.bgp.ipv4Address or an InternalIP in status.addresses)")


# ------------------------------------------------------------------------------ services


def service(doc: dict, namespace: str, ctx: Ctx) -> Service:
    meta, spec = doc.get("metadata") or {}, doc.get("spec") or {}
    cluster_ip = None
    text = spec.get("clusterIP")
    if text and text != "None":
        try:
            cluster_ip = IPv4Address(str(text))
        except ValueError:
            raise ctx.error(f"spec.clusterIP: bad address {quote(text)}") from None
    ports = []
    for index, raw in enumerate(spec.get("ports") or ()):
        port = raw.get("port")
        if not isinstance(port, int):
            raise ctx.error(f"spec.ports[{index}].port: expected a number, got {quote(port)}")
        target = raw.get("targetPort", port)
        ports.append(ServicePort(port=port, target_port=target,
                                 protocol=str(raw.get("protocol") or "TCP"),
                                 name=raw.get("name"), node_port=raw.get("nodePort")))
    return Service(namespace=namespace, name=str(meta["name"]), cluster_ip=cluster_ip,
                   type=str(spec.get("type") or "ClusterIP"),
                   selector=dict(spec.get("selector") or {}), ports=tuple(ports),
                   origin=ctx.origin)


def endpoint_slice(doc: dict, namespace: str, ctx: Ctx) -> EndpointSlice:
    meta = doc.get("metadata") or {}
    addresses: list[IPv4Address] = []
    for index, endpoint in enumerate(doc.get("endpoints") or ()):
        if ((endpoint or {}).get("conditions") or {}).get("ready") is False:
            continue
        for text in endpoint.get("addresses") or ():
            try:
                parsed = ip_address(str(text))
            except ValueError:
                raise ctx.error(f"endpoints[{index}].addresses: bad address {quote(text)}") \
                    from None
            if isinstance(parsed, IPv4Address):
                addresses.append(parsed)
    ports = tuple((p.get("name") or None, int(p.get("port") or 0), str(p.get("protocol") or "TCP"))
                  for p in doc.get("ports") or ())
    return EndpointSlice(namespace=namespace, name=str(meta["name"]),
                         service=str((meta.get("labels") or {}).get(
                             "kubernetes.io/service-name", "")),
                         addresses=tuple(addresses), ports=ports, origin=ctx.origin)
