"""projectcalico.org/v3 objects -> the model, as libcalico-go's update processors pass them on.

Sources: ``libcalico-go/lib/backend/syncersv1/updateprocessors/`` (networkpolicyprocessor.go,
globalnetworkpolicyprocessor.go, staged*processor.go, rules.go, selectors.go, tierprocessor.go,
networksetprocessor.go, hostendpointprocessor.go, profileprocessor.go) and
``libcalico-go/lib/names/policy.go`` for the <=v3.31 tier-prefixed policy names.

Backend form of a rule (``Rule``/``EntityRule`` in the model): ``selector`` is the single
selector felix evaluates (``GetEntityRuleSelector``: namespace term, service-account terms and
the rule's own selector folded together); ``namespace_selector`` and ``service_account_*``
keep the originals for display only and must not be applied again. ``not_selector`` is passed
through unchanged, as the update processor does.

Every function takes a ``Ctx`` naming the file and object, so errors are one precise line.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv4Network, IPv6Network, ip_network
from typing import Any

from tracer.errors import InputError, quote
from tracer.selector.selector import SelectorError, parse_selector
from tracer.selector.syntax import canonical_text, map_labels
from tracer.model.cluster import (
    EntityRule, FelixConfig, HostEndpoint, IcmpFields, IPPool, NetworkSet, Origin, Policy,
    PortSpec, Profile, ProtoPort,
    Rule, Tier)

NAMESPACE_LABEL = "projectcalico.org/namespace"
NAMESPACE_PREFIX = "pcns."
SERVICE_ACCOUNT_PREFIX = "pcsa."
SERVICE_ACCOUNT_LABEL = "projectcalico.org/serviceaccount"

PROTOCOL_NAMES = {"tcp": "TCP", "udp": "UDP", "icmp": "ICMP", "icmpv6": "ICMPv6", "sctp": "SCTP",
                  "udplite": "UDPLite"}
ACTIONS = {"allow": "Allow", "deny": "Deny", "pass": "Pass", "log": "Log"}


@dataclass(frozen=True)
class Ctx:
    """Where the object being converted came from (for errors, warnings and provenance)."""

    origin: Origin
    warnings: list[str]
    calico_version: tuple[int, int] = (3, 32)
    calico_patch: int | None = None      # "3.30.2" -> 2; None: the release's newest patch

    def error(self, problem: str) -> InputError:
        return InputError(problem, file=self.origin.file, obj=self.origin.describe())

    def warn(self, problem: str) -> None:
        self.warnings.append(f"{self.origin.file}: {self.origin.describe()}: {problem}")


# ------------------------------------------------------------------------------ selectors


def check_selector(text: str, field_path: str, ctx: Ctx) -> str:
    """Parse ``text`` (raising a one-line error with the column on failure); returns it."""
    try:
        parse_selector(text)
    except SelectorError as err:
        column = getattr(err, "column", None)
        where = f" at column {column}" if column is not None else ""
        raise ctx.error(f"{field_path}: invalid selector {quote(text)}{where}: {err}") from None
    return text


def prefixed(text: str, prefix: str, field_path: str, ctx: Ctx) -> str:
    """``parseSelectorAttachPrefix``: parse, prefix every label key, print canonically."""
    try:
        return _prefixed_canonical(text, prefix)
    except SelectorError as err:
        column = getattr(err, "column", None)
        where = f" at column {column}" if column is not None else ""
        raise ctx.error(f"{field_path}: invalid selector {quote(text)}{where}: {err}") from None


@functools.lru_cache(maxsize=65536)
def _prefixed_canonical(text: str, prefix: str) -> str:
    """``parse_selector(text).with_label_prefix(prefix).canonical`` without compiling the
    prefixed selector's matcher (only its text is kept); policies repeat the same few."""
    return canonical_text(map_labels(parse_selector(text).root, lambda key: prefix + key))


def endpoint_selector(namespace_selector: str | None, selector: str | None, sa_selector: str,
                      not_selector: str | None, ns: str | None, field_path: str,
                      ctx: Ctx) -> str | None:
    """rules.go ``getEndpointSelector``: the one selector felix evaluates for an EntityRule."""
    ns_sel = ""
    if namespace_selector:
        ns_sel = prefixed(namespace_selector, NAMESPACE_PREFIX, f"{field_path}.namespaceSelector",
                          ctx)
        # strings.Replace on the printed selector, exactly as rules.go does.
        ns_sel = ns_sel.replace("all()", "has(projectcalico.org/namespace)")
        ns_sel = ns_sel.replace("global()", "!has(projectcalico.org/namespace)")
    elif ns:
        ns_sel = f"{NAMESPACE_LABEL} == '{ns}'"
    parts = [s for s in (sa_selector, selector or "") if s]
    combined = parts[0] if len(parts) == 1 else ("(" + ") && (".join(parts) + ")" if parts else "")
    if ns_sel and (combined or not_selector or namespace_selector):
        combined = f"({ns_sel}) && ({combined})" if combined else ns_sel
    return combined or None


def service_account_selector(names: tuple[str, ...], selector: str | None, field_path: str,
                             ctx: Ctx) -> str:
    """rules.go ``parseServiceAccounts``: pcsa.-prefixed selector AND names-in-set."""
    updated = prefixed(selector, SERVICE_ACCOUNT_PREFIX, f"{field_path}.selector", ctx) \
        if selector else ""
    if not names:
        return updated
    listed = "', '".join(names)
    by_name = _canonical(f"{SERVICE_ACCOUNT_LABEL} in {{ '{listed}' }}", field_path, ctx)
    return f"({updated}) && ({by_name})" if updated else by_name


def _canonical(text: str, field_path: str, ctx: Ctx) -> str:
    try:
        return parse_selector(text).canonical
    except SelectorError as err:
        raise ctx.error(f"{field_path}: invalid selector {quote(text)}: {err}") from None


# ------------------------------------------------------------------------------ scalars


def parse_net(text: Any, field_path: str, ctx: Ctx) -> IPv4Network | IPv6Network:
    """A CIDR or bare IP (``cnet.ParseCIDROrIP``), masked to its network address."""
    try:
        return ip_network(str(text).strip(), strict=False)
    except ValueError:
        raise ctx.error(f"{field_path}: bad CIDR {quote(text)}") from None


def parse_nets(values: Any, field_path: str, ctx: Ctx) -> tuple[tuple[IPv4Network, ...], bool]:
    """IPv4 networks of a list, and whether the list was non-empty but all IPv6."""
    if values is None:
        return (), False
    if not isinstance(values, list):
        raise ctx.error(f"{field_path}: expected a list of CIDRs")
    nets = [parse_net(v, f"{field_path}[{i}]", ctx) for i, v in enumerate(values)]
    v4 = tuple(n for n in nets if isinstance(n, IPv4Network))
    return v4, bool(nets) and not v4


def parse_protocol(value: Any, field_path: str, ctx: Ctx) -> str | None:
    if value is None:
        return None
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        number = int(value)
        if not 0 <= number <= 255:
            raise ctx.error(f"{field_path}: protocol number {number} out of range 0-255")
        return str(number)
    name = PROTOCOL_NAMES.get(str(value).lower())
    if name is None:
        raise ctx.error(f"{field_path}: unknown protocol {quote(value)}")
    return name


def parse_port(value: Any, field_path: str, ctx: Ctx) -> PortSpec:
    """numorstring.Port: 80, "80", "80:90" or a port name."""
    text = str(value).strip()
    try:
        if ":" in text:
            first_text, last_text = text.split(":", 1)
            first, last = int(first_text), int(last_text)
        else:
            first = last = int(text)
    except ValueError:
        if isinstance(value, str) and text and text[0].isalpha() and ":" not in text:
            return PortSpec(name=text)
        raise ctx.error(f"{field_path}: bad port {quote(value)}") from None
    if not (0 <= first <= 65535 and 0 <= last <= 65535) or first > last:
        raise ctx.error(f"{field_path}: bad port range {quote(value)}")
    return PortSpec(first=first, last=last)


def parse_order(value: Any, field_path: str, ctx: Ctx) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ctx.error(f"{field_path}: order must be a number, got {quote(value)}") from None


def _str(value: Any, field_path: str, ctx: Ctx) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ctx.error(f"{field_path}: expected a string, got {quote(value)}")
    return value


# ------------------------------------------------------------------------------ rules


def api_entity(raw: dict | None, field_path: str, ctx: Ctx) -> tuple[EntityRule, bool]:
    """An API-form EntityRule (selectors as written) and whether all its nets are IPv6."""
    raw = raw or {}
    nets, nets_v6_only = parse_nets(raw.get("nets"), f"{field_path}.nets", ctx)
    not_nets, not_nets_v6_only = parse_nets(raw.get("notNets"), f"{field_path}.notNets", ctx)
    selector = _str(raw.get("selector"), f"{field_path}.selector", ctx)
    not_selector = _str(raw.get("notSelector"), f"{field_path}.notSelector", ctx)
    ns_selector = _str(raw.get("namespaceSelector"), f"{field_path}.namespaceSelector", ctx)
    for name, text in (("selector", selector), ("notSelector", not_selector),
                       ("namespaceSelector", ns_selector)):
        if text:
            check_selector(text, f"{field_path}.{name}", ctx)
    sa = raw.get("serviceAccounts") or {}
    sa_names = tuple(str(n) for n in sa.get("names") or ())
    sa_selector = _str(sa.get("selector"), f"{field_path}.serviceAccounts.selector", ctx)
    if raw.get("services"):
        raise ctx.error(f"{field_path}.services: service matches in rules are not supported "
                        f"by calico-trace")
    ports = tuple(parse_port(p, f"{field_path}.ports[{i}]", ctx)
                  for i, p in enumerate(raw.get("ports") or ()))
    not_ports = tuple(parse_port(p, f"{field_path}.notPorts[{i}]", ctx)
                      for i, p in enumerate(raw.get("notPorts") or ()))
    entity = EntityRule(nets=nets, not_nets=not_nets, selector=selector, not_selector=not_selector,
                        namespace_selector=ns_selector, service_account_names=sa_names,
                        service_account_selector=sa_selector, ports=ports, not_ports=not_ports)
    return entity, nets_v6_only or not_nets_v6_only


def api_rule(raw: Any, field_path: str, ctx: Ctx) -> Rule | None:
    """A v3 API rule; None when felix's IPv4 rendering would drop it (IPv6-only nets)."""
    if not isinstance(raw, dict):
        raise ctx.error(f"{field_path}: a rule must be a mapping")
    action = ACTIONS.get(str(raw.get("action", "")).lower())
    if action is None:
        raise ctx.error(f"{field_path}.action: expected Allow, Deny, Pass or Log, "
                        f"got {quote(raw.get('action'))}")
    source, src_v6 = api_entity(raw.get("source"), f"{field_path}.source", ctx)
    destination, dst_v6 = api_entity(raw.get("destination"), f"{field_path}.destination", ctx)
    ip_version = raw.get("ipVersion")
    if ip_version not in (None, 4, 6):
        raise ctx.error(f"{field_path}.ipVersion: expected 4 or 6, got {quote(ip_version)}")
    if src_v6 or dst_v6:
        # felix FilterRuleToIPVersion: a net list left empty for IPv4 drops the whole rule.
        ctx.warn(f"{field_path}: only IPv6 CIDRs in a net match, rule not rendered for IPv4")
        return None
    if raw.get("http"):
        ctx.warn(f"{field_path}.http: HTTP matches are enforced by the application layer, "
                 f"not by iptables; ignored")
    annotations = tuple(sorted(((raw.get("metadata") or {}).get("annotations") or {}).items()))
    return Rule(action=action,
                protocol=parse_protocol(raw.get("protocol"), f"{field_path}.protocol", ctx),
                not_protocol=parse_protocol(raw.get("notProtocol"), f"{field_path}.notProtocol",
                                            ctx),
                icmp=_icmp(raw.get("icmp"), f"{field_path}.icmp", ctx),
                not_icmp=_icmp(raw.get("notICMP"), f"{field_path}.notICMP", ctx),
                source=source, destination=destination, ip_version=ip_version,
                annotations=tuple((str(k), str(v)) for k, v in annotations))


def _icmp(raw: Any, field_path: str, ctx: Ctx) -> IcmpFields | None:
    if not raw:
        return None
    values = {}
    for key in ("type", "code"):
        value = raw.get(key)
        if value is not None and (not isinstance(value, int) or not 0 <= value <= 255):
            raise ctx.error(f"{field_path}.{key}: expected 0-255, got {quote(value)}")
        values[key] = value
    return IcmpFields(**values)


def backend_entity(entity: EntityRule, ns: str | None, field_path: str, ctx: Ctx) -> EntityRule:
    """rules.go ``GetEntityRuleSelector`` applied to one side of a rule."""
    sa_sel = ""
    if entity.service_account_names or entity.service_account_selector:
        sa_sel = service_account_selector(entity.service_account_names,
                                          entity.service_account_selector,
                                          f"{field_path}.serviceAccounts", ctx)
    selector = endpoint_selector(entity.namespace_selector, entity.selector, sa_sel,
                                 entity.not_selector, ns, field_path, ctx)
    return replace(entity, selector=selector)


def backend_rule(rule: Rule, ns: str | None, field_path: str, ctx: Ctx) -> Rule:
    """rules.go ``RuleAPIV3ToBackend`` (``ns`` is None for global objects)."""
    return replace(rule,
                   source=backend_entity(rule.source, ns, f"{field_path}.source", ctx),
                   destination=backend_entity(rule.destination, ns,
                                              f"{field_path}.destination", ctx))


def backend_rules(raw_rules: Any, ns: str | None, field_path: str, ctx: Ctx) -> tuple[Rule, ...]:
    if raw_rules is None:
        return ()
    if not isinstance(raw_rules, list):
        raise ctx.error(f"{field_path}: expected a list of rules")
    out = []
    for index, raw in enumerate(raw_rules):
        rule = api_rule(raw, f"{field_path}[{index}]", ctx)
        if rule is not None:
            out.append(backend_rule(rule, ns, f"{field_path}[{index}]", ctx))
    return tuple(out)


# ------------------------------------------------------------------------------ policies


POLICY_TYPES = {"ingress": "ingress", "egress": "egress"}


def policy_types(raw: Any, ingress: Any, egress: Any, field_path: str,
                 ctx: Ctx) -> tuple[str, ...]:
    """Types as the v3 API defaults them: given, else Ingress (+ Egress if egress rules)."""
    if raw:
        types = []
        for index, value in enumerate(raw):
            kind = POLICY_TYPES.get(str(value).lower())
            if kind is None:
                raise ctx.error(f"{field_path}[{index}]: expected Ingress or Egress, "
                                f"got {quote(value)}")
            types.append(kind)
        return tuple(dict.fromkeys(types))
    # libcalico-go/lib/clientv3 defaultPolicyTypesField.
    types = ["ingress"] if ingress or not egress else []
    if egress:
        types.append("egress")
    return tuple(types)


def backend_policy_name(name: str, tier: str, ctx: Ctx) -> str:
    """The name felix sees: <=v3.31 stores ``<tier>.<name>`` (default tier: ``default.<name>``)."""
    if ctx.calico_version >= (3, 32):
        return name
    if "." not in name:
        if tier != "default":
            raise ctx.error(f"metadata.name: Calico <=3.31 requires a policy in tier {quote(tier)} "
                            f"to be named '{tier}.<name>'")
        return f"default.{name}"
    if not name.startswith(f"{tier}."):
        raise ctx.error(f"metadata.name: policy name {quote(name)} does not start with its tier "
                        f"'{tier}.' (required by Calico <=3.31)")
    return name


def calico_policy(kind: str, name: str, namespace: str | None, spec: dict, ctx: Ctx) -> Policy:
    """NetworkPolicy / GlobalNetworkPolicy and their staged forms, as felix receives them."""
    is_global = namespace is None
    tier = spec.get("tier") or "default"
    selector = spec.get("selector") or ""
    if selector:
        check_selector(selector, "spec.selector", ctx)
    if not is_global:
        ns_term = f"{NAMESPACE_LABEL} == '{namespace}'"
        selector = f"({selector}) && {ns_term}" if selector else ns_term
    else:
        ns_sel = spec.get("namespaceSelector") or ""
        if ns_sel:
            selector = _append_prefixed(selector, ns_sel, NAMESPACE_PREFIX,
                                        "spec.namespaceSelector", ctx)
            selector = selector.replace("all()", "has(projectcalico.org/namespace)")
    sa_sel = spec.get("serviceAccountSelector") or ""
    if sa_sel:
        selector = _append_prefixed(selector, sa_sel, SERVICE_ACCOUNT_PREFIX,
                                    "spec.serviceAccountSelector", ctx)
        if is_global:
            selector = selector.replace("all()", "has(projectcalico.org/serviceaccount)")
    ingress_raw, egress_raw = spec.get("ingress"), spec.get("egress")
    return Policy(
        kind=kind, name=backend_policy_name(name, tier, ctx), namespace=namespace, tier=tier,
        order=parse_order(spec.get("order"), "spec.order", ctx),
        selector=selector or "all()",
        types=policy_types(spec.get("types"), ingress_raw, egress_raw, "spec.types", ctx),
        ingress=backend_rules(ingress_raw, namespace, "spec.ingress", ctx),
        egress=backend_rules(egress_raw, namespace, "spec.egress", ctx),
        do_not_track=bool(spec.get("doNotTrack")), pre_dnat=bool(spec.get("preDNAT")),
        apply_on_forward=bool(spec.get("applyOnForward")), origin=ctx.origin)


def _append_prefixed(current: str, extra: str, prefix: str, field_path: str, ctx: Ctx) -> str:
    """selectors.go ``prefixAndAppendSelector``."""
    added = prefixed(extra, prefix, field_path, ctx)
    return f"({current}) && {added}" if current else added


# ------------------------------------------------------------------------------ other kinds


def tier(name: str, spec: dict, ctx: Ctx) -> Tier:
    action = str(spec.get("defaultAction") or "Deny").capitalize()
    if action not in ("Deny", "Pass"):
        raise ctx.error(f"spec.defaultAction: expected Deny or Pass, got {quote(action)}")
    return Tier(name=name, order=parse_order(spec.get("order"), "spec.order", ctx),
                default_action=action, origin=ctx.origin)


def network_set(name: str, namespace: str | None, labels: dict[str, str], spec: dict,
                ctx: Ctx) -> NetworkSet:
    nets, _ = parse_nets(spec.get("nets"), "spec.nets", ctx)
    labels = dict(labels)
    if namespace is not None:
        # networksetprocessor.go adds the namespace label; kns.<ns> is its parent profile.
        labels[NAMESPACE_LABEL] = namespace
    return NetworkSet(name=name, namespace=namespace, nets=nets, labels=labels, origin=ctx.origin)


def host_endpoint(name: str, labels: dict[str, str], spec: dict, ctx: Ctx) -> HostEndpoint:
    node = _str(spec.get("node"), "spec.node", ctx)
    if not node:
        raise ctx.error("spec.node: a HostEndpoint needs a node")
    ips: list[IPv4Address] = []
    for index, text in enumerate(spec.get("expectedIPs") or ()):
        net = parse_net(text, f"spec.expectedIPs[{index}]", ctx)
        if isinstance(net, IPv4Network):
            ips.append(net.network_address)
    interface = _str(spec.get("interfaceName"), "spec.interfaceName", ctx)
    if not interface and not ips:
        raise ctx.error("spec: a HostEndpoint needs interfaceName or expectedIPs")
    return HostEndpoint(name=name, node=node, interface_name=interface, expected_ips=tuple(ips),
                        labels=dict(labels), profiles=tuple(spec.get("profiles") or ()),
                        origin=ctx.origin)


def profile(name: str, spec: dict, ctx: Ctx) -> Profile:
    return Profile(name=name, labels_to_apply=dict(spec.get("labelsToApply") or {}),
                   ingress=backend_rules(spec.get("ingress"), None, "spec.ingress", ctx),
                   egress=backend_rules(spec.get("egress"), None, "spec.egress", ctx),
                   origin=ctx.origin)


ENCAP_MODES = {"always": "Always", "crosssubnet": "CrossSubnet", "never": "Never", "": "Never"}


def service_cidrs(spec: dict, ctx: Ctx) -> tuple[str, ...]:
    """A BGPConfiguration's advertised service CIDRs (cluster, external, load balancer), in
    felix's order: the text sorted (``BlockedCIDRsToIptablesChains``). IPv6 ones belong to
    the IPv6 chains, which calico-trace does not model: said and left out."""
    cidrs = []
    for field_name in ("serviceClusterIPs", "serviceExternalIPs", "serviceLoadBalancerIPs"):
        for block in spec.get(field_name) or ():
            text = str(block.get("cidr") or "")
            if not text:
                continue
            if ":" in text:
                ctx.warn(f"spec.{field_name}: IPv6 CIDR {text} skipped (calico-trace models "
                         "IPv4 only)")
                continue
            cidrs.append(text)
    return tuple(sorted(cidrs))


def ippool(name: str, spec: dict, ctx: Ctx) -> IPPool | None:
    """An IPv4 IPPool (IPv6 pools are skipped with a warning: the model is IPv4-only)."""
    if not spec.get("cidr"):
        raise ctx.error("spec.cidr: an IPPool needs a cidr")
    try:
        cidr = ip_network(str(spec["cidr"]), strict=True)
    except ValueError as err:
        raise ctx.error(f"spec.cidr: bad CIDR {quote(spec['cidr'])} ({err})") from None
    if not isinstance(cidr, IPv4Network):
        ctx.warn("IPv6 pool skipped (calico-trace models IPv4 only)")
        return None
    block_size = spec.get("blockSize", 26)
    if not isinstance(block_size, int) or not 20 <= block_size <= 32:
        raise ctx.error(f"spec.blockSize: IPv4 block size must be 20-32, got {quote(block_size)}")
    if block_size < cidr.prefixlen:
        raise ctx.error(f"spec.blockSize: /{block_size} is larger than the pool {cidr}")
    ipip = spec.get("ipipMode")
    legacy_ipip = spec.get("ipip") or {}
    if ipip is None and legacy_ipip.get("enabled"):
        ipip = legacy_ipip.get("mode") or "Always"
    modes = {}
    for key, value in (("ipipMode", ipip), ("vxlanMode", spec.get("vxlanMode"))):
        mode = ENCAP_MODES.get(str(value or "").lower())
        if mode is None:
            raise ctx.error(f"spec.{key}: expected Always, CrossSubnet or Never, "
                            f"got {quote(value)}")
        modes[key] = mode
    if modes["ipipMode"] != "Never" and modes["vxlanMode"] != "Never":
        raise ctx.error("spec: ipipMode and vxlanMode cannot both be enabled on one pool")
    node_selector = spec.get("nodeSelector") or "all()"
    check_selector(node_selector, "spec.nodeSelector", ctx)
    return IPPool(name=name, cidr=cidr, block_size=block_size, ipip_mode=modes["ipipMode"],
                  vxlan_mode=modes["vxlanMode"],
                  nat_outgoing=bool(spec.get("natOutgoing", spec.get("nat-outgoing", False))),
                  disabled=bool(spec.get("disabled", False)), node_selector=node_selector,
                  origin=ctx.origin)


# ------------------------------------------------------------------------------ felix


def _choice(options: tuple[str, ...]):
    def convert(value: Any, field_path: str, ctx: Ctx) -> str:
        for option in options:
            if str(value).lower() == option.lower():
                return option
        raise ctx.error(f"{field_path}: expected one of {', '.join(options)}, got {quote(value)}")
    return convert


def _int(value: Any, field_path: str, ctx: Ctx) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            return int(str(value), 0)
        except ValueError:
            raise ctx.error(f"{field_path}: expected an integer, got {quote(value)}") from None
    return value


def _bool(value: Any, field_path: str, ctx: Ctx) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "false"):
        return str(value).lower() == "true"
    raise ctx.error(f"{field_path}: expected true or false, got {quote(value)}")


def _text(value: Any, field_path: str, ctx: Ctx) -> str:
    return str(value)


def _failsafe(value: Any, field_path: str, ctx: Ctx) -> tuple[ProtoPort, ...]:
    """felix's port-list (config/param_types.go PortListParam): tcp or udp only (felix stops
    at start-up on anything else, sctp included), a port 0-65535, ``net`` a CIDR or an address
    held canonical (cnet.ParseCIDROrIP: 10.0.0.7/24 -> 10.0.0.0/24, an address -> /32)."""
    out = []
    for index, entry in enumerate(value or ()):
        where = f"{field_path}[{index}]"
        if not isinstance(entry, dict) or "port" not in entry:
            raise ctx.error(f"{where}: expected {{protocol, port}}")
        if not entry.get("protocol"):
            # The v3 API requires it; felix reads an empty one as ":PORT" and stops.
            raise ctx.error(f"{where}.protocol: missing (tcp or udp)")
        protocol = str(entry["protocol"]).lower()
        if protocol not in ("tcp", "udp"):
            raise ctx.error(f"{where}.protocol: {quote(entry.get('protocol'))}: felix accepts "
                            f"only tcp or udp in failsafe ports (it refuses to start otherwise)")
        port = _int(entry["port"], f"{where}.port", ctx)
        if not 0 <= port <= 65535:
            raise ctx.error(f"{where}.port: {port} outside 0-65535")
        net = entry.get("net") or None
        if net is not None:
            try:
                net = str(ip_network(str(net), strict=False))
            except ValueError:
                raise ctx.error(f"{where}.net: expected a CIDR or an IP address, "
                                f"got {quote(net)}") from None
        out.append(ProtoPort(protocol, port, net))
    return tuple(out)


def _port_range(value: Any, field_path: str, ctx: Ctx) -> tuple[int, int]:
    """numorstring.Port: a number or ``"MIN:MAX"``."""
    text = str(value)
    low, _, high = text.partition(":")
    if not low.isdigit() or not (high or low).isdigit():
        raise ctx.error(f"{field_path}: expected a port or MIN:MAX, got {quote(value)}")
    first, last = int(low), int(high or low)
    if not 1 <= first <= last <= 65535:
        raise ctx.error(f"{field_path}: port range {quote(value)} outside 1-65535")
    return first, last


# Fields a release's felix does not have: (first release, first patch) that has them.
FELIX_SINCE = {
    "logActionRateLimit": ((3, 30), 6),          # felix/rules/policy.go, v3.30.6
    "logActionRateLimitBurst": ((3, 30), 6),
    "natOutgoingExclusions": ((3, 31), 0),       # felix/rules/nat.go, v3.31.0
}


def _check_release(key: str, ctx: Ctx) -> None:
    since = FELIX_SINCE.get(key)
    if since is None:
        return
    (release, patch) = since
    version = ctx.calico_version
    if version < release or (version == release and ctx.calico_patch is not None
                             and ctx.calico_patch < patch):
        have = f"v{version[0]}.{version[1]}" + (f".{ctx.calico_patch}"
                                                 if ctx.calico_patch is not None else "")
        raise ctx.error(f"spec.{key}: felix {have} has no such field (added in "
                        f"v{release[0]}.{release[1]}.{patch})")


# config_params.go LogActionRateRegexp (empty: no limit).
_LOG_RATE = re.compile(r"[1-9]\d{0,3}/(?:second|minute|hour|day)")


def _log_rate(value: Any, field_path: str, ctx: Ctx) -> str | None:
    text = str(value)
    if text == "":
        return None
    if not _LOG_RATE.fullmatch(text):
        raise ctx.error(f"{field_path}: invalid log rate limit {quote(value)} (expected N/unit, "
                        f"N 1-9999, unit second, minute, hour or day)")
    return text


def _burst(value: Any, field_path: str, ctx: Ctx) -> int:
    burst = _int(value, field_path, ctx)
    if not 0 <= burst <= 9999:
        raise ctx.error(f"{field_path}: {burst} outside 0-9999")
    return burst


def _ipv4_address(value: Any, field_path: str, ctx: Ctx) -> str:
    try:
        return str(IPv4Address(str(value)))
    except ValueError:
        raise ctx.error(f"{field_path}: expected an IPv4 address, got {quote(value)}") from None


# Fields that change felix's rules in ways calico-trace does not model: accepted at felix's
# default, refused otherwise (a verdict built without them could be wrong).
FELIX_UNMODELLED_UNLESS_DEFAULT = {
    "wireguardHostEncryptionEnabled": False,
}

# FelixConfiguration field -> (FelixConfig attribute, converter).
FELIX_FIELDS = {
    "defaultEndpointToHostAction": ("default_endpoint_to_host_action",
                                    _choice(("Drop", "Accept", "Return"))),
    "iptablesFilterAllowAction": ("iptables_filter_allow_action", _choice(("Accept", "Return"))),
    "iptablesMangleAllowAction": ("iptables_mangle_allow_action", _choice(("Accept", "Return"))),
    "iptablesFilterDenyAction": ("iptables_filter_deny_action", _choice(("Drop", "Reject"))),
    "chainInsertMode": ("chain_insert_mode", _choice(("Insert", "Append"))),
    "iptablesMarkMask": ("iptables_mark_mask", _int),
    "logPrefix": ("log_prefix", _text),
    "logActionRateLimit": ("log_action_rate_limit", _log_rate),
    "logActionRateLimitBurst": ("log_action_rate_limit_burst", _burst),
    "interfacePrefix": ("interface_prefix", _text),
    "failsafeInboundHostPorts": ("failsafe_inbound_host_ports", _failsafe),
    "failsafeOutboundHostPorts": ("failsafe_outbound_host_ports", _failsafe),
    "disableConntrackInvalidCheck": ("disable_conntrack_invalid_check", _bool),
    "allowVXLANPacketsFromWorkloads": ("allow_vxlan_packets_from_workloads", _bool),
    "allowIPIPPacketsFromWorkloads": ("allow_ipip_packets_from_workloads", _bool),
    "vxlanPort": ("vxlan_port", _int),
    "vxlanVNI": ("vxlan_vni", _int),
    "vxlanMTU": ("vxlan_mtu", _int),
    "ipipMTU": ("ipip_mtu", _int),
    "wireguardEnabled": ("wireguard_enabled", _bool),
    "wireguardListeningPort": ("wireguard_listening_port", _int),
    "wireguardMTU": ("wireguard_mtu", _int),
    "wireguardInterfaceName": ("wireguard_interface_name", _text),
    "natPortRange": ("nat_port_range", _port_range),
    "natOutgoingAddress": ("nat_outgoing_address", _ipv4_address),
    "iptablesNATOutgoingInterfaceFilter": ("iptables_nat_outgoing_interface_filter", _text),
    "natOutgoingExclusions": ("nat_outgoing_exclusions",
                              _choice(("IPPoolsOnly", "IPPoolsAndHostIPs"))),
    "serviceLoopPrevention": ("service_loop_prevention",
                              _choice(("Drop", "Reject", "Disabled"))),
    "nftablesMode": ("nftables_mode", _choice(("Enabled", "Disabled", "Auto"))),
}


def felix_config(spec: dict, base: FelixConfig, ctx: Ctx) -> FelixConfig:
    """The ``default`` FelixConfiguration over felix's defaults."""
    return replace(base, **felix_changes(spec, ctx))


def felix_changes(spec: dict, ctx: Ctx) -> dict[str, Any]:
    """The FelixConfig attributes a FelixConfiguration sets (with its origin); other real
    fields are ignored with one warning (the schema has already rejected unknown ones)."""
    changes: dict[str, Any] = {}
    ignored = []
    for key, value in spec.items():
        if value is None:
            continue
        if key in FELIX_FIELDS:
            _check_release(key, ctx)
            attr, convert = FELIX_FIELDS[key]
            changes[attr] = convert(value, f"spec.{key}", ctx)
        elif key in FELIX_UNMODELLED_UNLESS_DEFAULT:
            default = FELIX_UNMODELLED_UNLESS_DEFAULT[key]
            if str(value).lower() != str(default).lower():
                raise ctx.error(f"spec.{key}: {quote(value)} changes felix's rules in a way "
                                f"calico-trace does not model (only {default} is)")
        else:
            ignored.append(key)
    if ignored:
        ctx.warn(f"fields that do not change the iptables model, ignored: {', '.join(ignored)}")
    return {**changes, "origin": ctx.origin}
