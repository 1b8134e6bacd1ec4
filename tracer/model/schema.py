"""Known fields of every kind calico-trace reads, so a misspelt field is an error, not a no-op.

A schema is a nested description: a ``dict`` maps field name -> schema of its value (an
``OPEN`` key lets other fields through), :class:`ListOf` describes a list, :class:`Required`
marks a field that must be there, a :class:`Leaf` checks a scalar (type, range, CIDR, address,
label syntax) and :data:`ANY` accepts anything (parts of an object we never interpret, e.g. a
container's probes). Field names come from the Kubernetes API types and from
``api/pkg/apis/projectcalico/v3/*.go`` (json tags, v3.29 ... HEAD); the leaf types and ranges
from the same Go types and their validators, so the converters can trust what they read.

:func:`check` returns the dotted path of the first field that does not fit (an unknown field
with a close match if there is one); the loader turns that into an
:class:`~tracer.errors.InputError`. It walks with an explicit stack: input controls the depth.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from ipaddress import ip_address, ip_interface, ip_network
from typing import Any, Callable, Union

from tracer.errors import escape, quote, shorten


class _Any:
    """Accepts any value (free-form maps, opaque sub-objects)."""

    def __repr__(self) -> str:
        return "ANY"


ANY = _Any()


@dataclass(frozen=True)
class ListOf:
    """A list whose items all follow ``item``; null items only where the API tolerates them
    (``ingress: [null]`` is an empty Kubernetes rule)."""

    item: "Schema"
    nulls: bool = False


@dataclass(frozen=True)
class Required:
    """A field that must be present and not null."""

    schema: "Schema"


@dataclass(frozen=True)
class Leaf:
    """A scalar (or flat map) check: ``test(value)`` returns the problem, or None (or, for a
    map, the key and the problem)."""

    name: str
    test: Callable[[Any], Any]

    def __repr__(self) -> str:
        return self.name


Schema = Union[_Any, ListOf, Required, Leaf, dict]
OPEN = "..."                    # as a key of a mapping schema: other fields are allowed


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _string(value: Any) -> str | None:
    return None if isinstance(value, str) else f"expected a string, got {_type_name(value)}"


def _boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else \
        f"expected true or false, got {quote(value)}"


def integer(low: int, high: int) -> Leaf:
    def test(value: Any) -> str | None:
        if not _is_int(value):
            return f"expected an integer, got {quote(value)}"
        return None if low <= value <= high else f"{value} is out of range {low}-{high}"
    return Leaf(f"integer {low}-{high}", test)


def _number(value: Any) -> str | None:
    try:
        number = float(value) if _is_int(value) or isinstance(value, (float, str)) else None
    except (ValueError, OverflowError):
        number = None
    if number is None or not math.isfinite(number):
        return f"expected a number, got {quote(value)}"
    return None


def _int_or_string(value: Any) -> str | None:
    if isinstance(value, str):
        return None if value else "expected a port number or name, got ''"
    return PORT.test(value)


DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
LABEL_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")


def _object_name(value: Any) -> str | None:
    if not isinstance(value, str):
        return f"expected a name (string), got {_type_name(value)}"
    if not DNS_SUBDOMAIN.fullmatch(value):
        return (f"{quote(value)} is not a valid name (lower-case letters, digits, '-' and '.', "
                f"at most 253)")
    return None


def label_key_problem(key: Any) -> str | None:
    """Kubernetes' label key syntax: ``[prefix/]name`` (IsQualifiedName)."""
    if not isinstance(key, str):
        return f"label key {quote(key)} is not a string (quote it)"
    prefix, _, name = key.rpartition("/")
    if (prefix and not DNS_SUBDOMAIN.fullmatch(prefix)) or not LABEL_NAME.fullmatch(name):
        return f"label key {quote(key)} is not a valid [prefix/]name"
    return None


def label_value_problem(value: Any) -> str | None:
    if not isinstance(value, str):
        return f"value must be a string, got {quote(value)} (quote it)"
    if value and not LABEL_NAME.fullmatch(value):
        return f"label value {quote(value)} is not valid (at most 63 letters, digits, '-_.')"
    return None


def _map_of(key_test: Callable[[Any], str | None], value_test: Callable[[Any], str | None]
            ) -> Callable[[Any], str | tuple[str, str] | None]:
    """A flat map's check; a bad value's problem comes with its key (to extend the path)."""
    def test(value: Any) -> str | tuple[str, str] | None:
        if not isinstance(value, dict):
            return f"expected a mapping, got {_type_name(value)}"
        for key, item in value.items():
            problem = key_test(key)
            if problem is not None:
                return problem
            problem = value_test(item)
            if problem is not None:
                return key, problem
        return None
    return test


def _string_key(key: Any) -> str | None:
    return None if isinstance(key, str) else f"key {quote(key)} is not a string (quote it)"


def _parses(kind: str, parse: Callable[[str], Any]) -> Callable[[Any], str | None]:
    def test(value: Any) -> str | None:
        if not isinstance(value, str):
            return f"expected {kind} (string), got {_type_name(value)}"
        try:
            parse(value.strip())
        except ValueError:
            return f"bad {kind} {quote(value)}"
        return None
    return test


STR = Leaf("string", _string)
BOOL = Leaf("boolean", _boolean)
NUMBER = Leaf("number", _number)
PORT = integer(1, 65535)
PORT_OR_ZERO = integer(0, 65535)
PORT_OR_NAME = Leaf("port number or name", _int_or_string)
NAME = Leaf("name", _object_name)
LABELS = Leaf("labels", _map_of(label_key_problem, label_value_problem))
STRING_MAP = Leaf("string map", _map_of(_string_key, _string))
CIDR = Leaf("CIDR", _parses("CIDR", lambda text: ip_network(text, strict=False)))
IP = Leaf("IP address", _parses("IP address", ip_address))
IP_OR_CIDR = Leaf("address", _parses("address", ip_interface))
STRINGS = ListOf(STR)


def _fields(names: str, value: Schema = ANY) -> dict:
    return {name: value for name in names.split()}


# ------------------------------------------------------------------------- Kubernetes shapes

OBJECT_META = {
    **_fields("generateName selfLink uid resourceVersion generation creationTimestamp "
              "deletionTimestamp deletionGracePeriodSeconds ownerReferences finalizers "
              "managedFields clusterName"),
    "name": NAME, "namespace": NAME, "labels": LABELS,
    "annotations": Leaf("annotations", _map_of(label_key_problem, _string)),
}

LABEL_SELECTOR = {
    "matchLabels": LABELS,
    "matchExpressions": ListOf({"key": Required(STR), "operator": Required(STR),
                                "values": STRINGS}),
}

CONTAINER_PORT = {"name": STR, "hostPort": PORT_OR_ZERO, "containerPort": Required(PORT),
                  "protocol": STR, "hostIP": STR}

CONTAINER = {
    **_fields("image command args workingDir envFrom env resources resizePolicy "
              "restartPolicy restartPolicyRules volumeMounts volumeDevices livenessProbe "
              "readinessProbe startupProbe lifecycle terminationMessagePath "
              "terminationMessagePolicy imagePullPolicy securityContext stdin stdinOnce tty"),
    "name": STR,
    "ports": ListOf(CONTAINER_PORT),
}

POD_SPEC = {
    **_fields("volumes ephemeralContainers restartPolicy terminationGracePeriodSeconds "
              "activeDeadlineSeconds dnsPolicy automountServiceAccountToken hostPID hostIPC "
              "shareProcessNamespace securityContext imagePullSecrets hostname subdomain "
              "affinity schedulerName tolerations hostAliases priorityClassName priority "
              "dnsConfig readinessGates runtimeClassName enableServiceLinks preemptionPolicy "
              "overhead topologySpreadConstraints setHostnameAsFQDN os hostUsers "
              "schedulingGates resourceClaims resources hostnameOverride"),
    "nodeName": NAME, "hostNetwork": BOOL, "nodeSelector": STRING_MAP,
    "serviceAccountName": NAME, "serviceAccount": NAME,
    "containers": ListOf(CONTAINER),
    "initContainers": ListOf(CONTAINER),
}

POD_STATUS = {OPEN: ANY, "phase": STR, "podIP": STR, "podIPs": ListOf({"ip": STR})}

NETWORK_POLICY_PEER = {
    "podSelector": LABEL_SELECTOR,
    "namespaceSelector": LABEL_SELECTOR,
    "ipBlock": {"cidr": Required(CIDR), "except": ListOf(CIDR)},
}

NETWORK_POLICY_PORT = {"protocol": STR, "port": PORT_OR_NAME, "endPort": PORT}

K8S_NETWORK_POLICY_SPEC = {
    "podSelector": LABEL_SELECTOR,
    "policyTypes": STRINGS,
    "ingress": ListOf({"from": ListOf(NETWORK_POLICY_PEER, nulls=True),
                       "ports": ListOf(NETWORK_POLICY_PORT, nulls=True)}, nulls=True),
    "egress": ListOf({"to": ListOf(NETWORK_POLICY_PEER, nulls=True),
                      "ports": ListOf(NETWORK_POLICY_PORT, nulls=True)}, nulls=True),
}

SERVICE_SPEC = {
    **_fields("externalIPs sessionAffinity loadBalancerIP loadBalancerSourceRanges externalName "
              "externalTrafficPolicy healthCheckNodePort publishNotReadyAddresses "
              "sessionAffinityConfig ipFamilies ipFamilyPolicy allocateLoadBalancerNodePorts "
              "loadBalancerClass internalTrafficPolicy trafficDistribution"),
    "selector": STRING_MAP, "clusterIP": STR, "clusterIPs": STRINGS, "type": STR,
    "ports": ListOf({"name": STR, "protocol": STR, "appProtocol": STR, "port": Required(PORT),
                     "targetPort": PORT_OR_NAME, "nodePort": PORT_OR_ZERO}),
}

NODE_SPEC = _fields("podCIDR podCIDRs providerID unschedulable taints configSource externalID")
NODE_STATUS = {OPEN: ANY, "addresses": ListOf({"type": STR, "address": STR})}

ENDPOINT_SLICE_ENDPOINT = {
    **_fields("targetRef zone hints deprecatedTopology"),
    "addresses": STRINGS, "hostname": STR, "nodeName": NAME,
    "conditions": {"ready": BOOL, "serving": BOOL, "terminating": BOOL},
}


def _k8s(spec: Schema | None = None, status: Schema = ANY, **extra: Schema) -> dict:
    top = {"apiVersion": STR, "kind": STR, "metadata": OBJECT_META, "status": status}
    if spec is not None:
        top["spec"] = spec
    top.update(extra)
    return top


# ------------------------------------------------------------------------- Calico shapes

PROTOCOL = Leaf("protocol", lambda v: None if isinstance(v, str) else integer(0, 255).test(v))
ICMP = {"type": integer(0, 254), "code": integer(0, 255)}

ENTITY_RULE = {
    "nets": ListOf(CIDR), "notNets": ListOf(CIDR), "selector": STR, "notSelector": STR,
    "namespaceSelector": STR, "ports": ListOf(Leaf("port", lambda v: None if isinstance(v, str)
                                                    else PORT_OR_ZERO.test(v))),
    "services": {"name": STR, "namespace": STR},
    "serviceAccounts": {"names": STRINGS, "selector": STR},
}
ENTITY_RULE["notPorts"] = ENTITY_RULE["ports"]

RULE = {
    "action": STR, "ipVersion": integer(4, 6), "protocol": PROTOCOL, "notProtocol": PROTOCOL,
    "icmp": ICMP,
    "notICMP": ICMP,
    "source": ENTITY_RULE,
    "destination": ENTITY_RULE,
    "http": {"methods": STRINGS, "paths": ListOf({"exact": STR, "prefix": STR})},
    "metadata": {"annotations": STRING_MAP},
}

_POLICY_COMMON = {
    "tier": NAME, "order": NUMBER, "selector": STR, "types": STRINGS,
    "serviceAccountSelector": STR, "performanceHints": STRINGS,
    "ingress": ListOf(RULE),
    "egress": ListOf(RULE),
}
CALICO_NP_SPEC = dict(_POLICY_COMMON)
CALICO_GNP_SPEC = {**_POLICY_COMMON, "doNotTrack": BOOL, "preDNAT": BOOL, "applyOnForward": BOOL,
                   "namespaceSelector": STR}
STAGED_NP_SPEC = {**CALICO_NP_SPEC, "stagedAction": STR}
STAGED_GNP_SPEC = {**CALICO_GNP_SPEC, "stagedAction": STR}
STAGED_KNP_SPEC = {**K8S_NETWORK_POLICY_SPEC, "stagedAction": STR}

TIER_SPEC = {"order": NUMBER, "defaultAction": STR}
NETWORK_SET_SPEC = {"nets": ListOf(CIDR)}
HOST_ENDPOINT_SPEC = {"node": NAME, "interfaceName": STR, "expectedIPs": ListOf(IP),
                      "profiles": STRINGS,
                      "ports": ListOf({"name": STR, "protocol": PROTOCOL, "port": PORT})}
PROFILE_SPEC = {"ingress": ListOf(RULE), "egress": ListOf(RULE), "labelsToApply": LABELS}
IPPOOL_SPEC = {
    "cidr": Required(CIDR), "vxlanMode": STR, "ipipMode": STR, "natOutgoing": BOOL,
    "disabled": BOOL, "disableBGPExport": BOOL, "blockSize": integer(0, 128),
    "nodeSelector": STR, "namespaceSelector": STR, "allowedUses": STRINGS,
    "assignmentMode": STR,
    # Deprecated v1-era forms still accepted by calicoctl.
    "ipip": {"enabled": BOOL, "mode": STR},
    "nat-outgoing": BOOL,
}
SERVICE_CIDRS = ListOf({"cidr": CIDR})
BGP_CONFIG_SPEC = {
    **_fields("logSeverityScreen nodeToNodeMeshEnabled asNumber serviceLoadBalancerAggregation "
              "communities prefixAdvertisements listenPort nodeMeshPassword "
              "nodeMeshMaxRestartTime bindMode ignoredInterfaces localWorkloadPeeringIPV4 "
              "localWorkloadPeeringIPV6 programClusterRoutes ipv4NormalRoutePriority "
              "ipv6NormalRoutePriority"),
    "serviceClusterIPs": SERVICE_CIDRS, "serviceExternalIPs": SERVICE_CIDRS,
    "serviceLoadBalancerIPs": SERVICE_CIDRS,
}
CALICO_NODE_SPEC = {
    **_fields("ipv6VXLANTunnelAddr vxlanTunnelMACAddrV6 orchRefs interfaces"),
    "ipv4VXLANTunnelAddr": IP_OR_CIDR, "vxlanTunnelMACAddr": STR,
    "addresses": ListOf({"address": STR, "type": STR}),
    "bgp": {**_fields("asNumber ipv6Address routeReflectorClusterID"),
            "ipv4Address": IP_OR_CIDR, "ipv4IPIPTunnelAddr": IP_OR_CIDR},
    "wireguard": {"interfaceIPv4Address": IP_OR_CIDR, "interfaceIPv6Address": STR},
}
CALICO_NODE_STATUS = {OPEN: ANY, "wireguardPublicKey": STR}

# Every FelixConfigurationSpec json field from v3.29.0 to HEAD: real fields from any release
# are accepted (those that do not change the iptables dataplane are ignored with a warning).
FELIX_CONFIG_FIELDS = frozenset("""
allowIPIPPacketsFromWorkloads allowVXLANPacketsFromWorkloads awsSrcDstCheck bpfAttachType
bpfCTLBLogFilter bpfConnectTimeLoadBalancing bpfConnectTimeLoadBalancingEnabled
bpfConntrackLogLevel bpfConntrackMode bpfConntrackTimeouts bpfDSROptoutCIDRs bpfDataIfacePattern
bpfDisableGROForIfaces bpfDisableUnprivileged bpfEnabled bpfEnforceRPF bpfExcludeCIDRsFromNAT
bpfExportBufferSizeMB bpfExtToServiceConnmark bpfExternalServiceMode
bpfForceTrackPacketsFromIfaces bpfHostConntrackBypass bpfHostNetworkedNATWithoutCTLB
bpfIPFragTimeout bpfIPFragmentReassemblyEnabled bpfJITHardening
bpfKubeProxyEndpointSlicesEnabled bpfKubeProxyHealthzPort bpfKubeProxyIptablesCleanupEnabled
bpfKubeProxyMinSyncPeriod bpfL3IfacePattern bpfLogFilters bpfLogLevel
bpfMaglevMaxEndpointsPerService bpfMaglevMaxServices bpfMapSizeConntrack
bpfMapSizeConntrackCleanupQueue bpfMapSizeConntrackScaling bpfMapSizeIPSets bpfMapSizeIfState
bpfMapSizeNATAffinity bpfMapSizeNATBackend bpfMapSizeNATFrontend bpfMapSizePerCpuConntrack
bpfMapSizeRoute bpfOverlayHostSourceIP bpfPSNATPorts bpfPolicyDebugEnabled bpfProfiling
bpfRedirectToPeer cgroupV2Path chainInsertMode dataplaneDriver dataplaneWatchdogTimeout
debugDisableLogDropping debugHost debugMemoryProfilePath debugPort
debugSimulateCalcGraphHangAfter debugSimulateDataplaneApplyDelay debugSimulateDataplaneHangAfter
defaultEndpointToHostAction deviceRouteProtocol deviceRouteSourceAddress
deviceRouteSourceAddressIPv6 disableConntrackInvalidCheck endpointReportingDelay
endpointReportingEnabled endpointStatusPathPrefix externalNodesList failsafeInboundHostPorts
failsafeOutboundHostPorts featureDetectOverride featureGates floatingIPs
flowLogsCollectorDebugTrace flowLogsFlushInterval flowLogsGoldmaneServer flowLogsLocalReporter
flowLogsPolicyEvaluationMode genericXDPEnabled goGCThreshold goMaxProcs goMemoryLimitMB
healthEnabled healthHost healthPort healthTimeoutOverrides interfaceExclude interfacePrefix
interfaceRefreshInterval ipForwarding ipipEnabled ipipMTU ipsetsRefreshInterval iptablesBackend
iptablesFilterAllowAction iptablesFilterDenyAction iptablesLockFilePath
iptablesLockProbeInterval iptablesLockTimeout iptablesMangleAllowAction iptablesMarkMask
iptablesNATOutgoingInterfaceFilter iptablesPostWriteCheckInterval iptablesRefreshInterval
ipv4ElevatedRoutePriority ipv4NormalRoutePriority ipv6ElevatedRoutePriority
ipv6NormalRoutePriority ipv6Support istioAmbientMode istioDSCPMark kubeNodePortRanges
liveMigrationRouteConvergenceTime localSubnetL2Reachability
localSubnetL2ReachabilityRefreshInterval logActionRateLimit logActionRateLimitBurst
logDebugFilenameRegex logFilePath logPrefix logSeverityFile logSeverityScreen logSeveritySys
maxIpsetSize metadataAddr metadataPort mtuIfacePattern natOutgoingAddress natOutgoingExclusions
natPortRange netlinkTimeout nftablesFilterAllowAction nftablesFilterDenyAction
nftablesFlowTableDataIfacePattern nftablesFlowTableOffload nftablesMangleAllowAction
nftablesMarkMask nftablesMode nftablesRefreshInterval nodeSelector openstackRegion
policySyncPathPrefix programClusterRoutes prometheusGoMetricsEnabled prometheusMetricsCAFile
prometheusMetricsCertFile prometheusMetricsClientAuth prometheusMetricsEnabled
prometheusMetricsHost prometheusMetricsKeyFile prometheusMetricsPort
prometheusProcessMetricsEnabled prometheusWireGuardMetricsEnabled removeExternalRoutes
reportingInterval reportingTTL requireMTUFile routeRefreshInterval routeSource routeSyncDisabled
routeTableRange routeTableRanges serviceLoopPrevention sidecarAccelerationEnabled
usageReportingEnabled usageReportingInitialDelay usageReportingInterval
useInternalDataplaneDriver vxlanEnabled vxlanMTU vxlanMTUV6 vxlanPort vxlanVNI
windowsManageFirewallRules wireguardEnabled wireguardEnabledV6 wireguardHostEncryptionEnabled
wireguardInterfaceName wireguardInterfaceNameV6 wireguardKeepAlive wireguardListeningPort
wireguardListeningPortV6 wireguardMTU wireguardMTUV6 wireguardRoutingRulePriority
wireguardThreadingEnabled workloadSourceSpoofing xdpEnabled xdpRefreshInterval
""".split())

FELIX_CONFIG_SPEC = {name: ANY for name in FELIX_CONFIG_FIELDS}


# ------------------------------------------------------------------------- per kind

# Keyed by the kind name after apiVersion normalisation (see loader.KIND_KEYS).
KIND_SCHEMAS: dict[str, dict] = {
    "Namespace": _k8s(_fields("finalizers")),
    "Pod": _k8s(POD_SPEC, POD_STATUS),
    "Node": _k8s(NODE_SPEC, NODE_STATUS),
    "ServiceAccount": _k8s(None, secrets=ANY, imagePullSecrets=ANY,
                           automountServiceAccountToken=ANY),
    "Service": _k8s(SERVICE_SPEC),
    "EndpointSlice": _k8s(None, addressType=STR, endpoints=ListOf(ENDPOINT_SLICE_ENDPOINT),
                          ports=ListOf({"name": STR, "protocol": STR, "port": PORT_OR_ZERO,
                                        "appProtocol": STR})),
    "NetworkPolicy": _k8s(K8S_NETWORK_POLICY_SPEC),
    "calico/NetworkPolicy": _k8s(CALICO_NP_SPEC),
    "calico/GlobalNetworkPolicy": _k8s(CALICO_GNP_SPEC),
    "calico/StagedNetworkPolicy": _k8s(STAGED_NP_SPEC),
    "calico/StagedGlobalNetworkPolicy": _k8s(STAGED_GNP_SPEC),
    "calico/StagedKubernetesNetworkPolicy": _k8s(STAGED_KNP_SPEC),
    "calico/Tier": _k8s(TIER_SPEC),
    "calico/NetworkSet": _k8s(NETWORK_SET_SPEC),
    "calico/GlobalNetworkSet": _k8s(NETWORK_SET_SPEC),
    "calico/HostEndpoint": _k8s(HOST_ENDPOINT_SPEC),
    "calico/Profile": _k8s(PROFILE_SPEC),
    "calico/IPPool": _k8s(IPPOOL_SPEC),
    "calico/FelixConfiguration": _k8s(FELIX_CONFIG_SPEC),
    "calico/BGPConfiguration": _k8s(BGP_CONFIG_SPEC),
    "calico/Node": _k8s(CALICO_NODE_SPEC, CALICO_NODE_STATUS),
}


@dataclass(frozen=True)
class SchemaProblem:
    """Where a document departs from its schema."""

    path: str
    problem: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}" if self.path else self.problem


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def check(value: Any, schema: Schema, path: str = "") -> SchemaProblem | None:
    """First unknown field or shape mismatch in ``value`` (document order), or None.

    Nearly every document is fine: a validator compiled from the schema says so at a few
    dict operations per field; only a document it does not pass is walked below to find and
    name the first problem."""
    if _accepts(schema)(value):
        return None
    return _first_problem(value, schema, path)


_ACCEPTS: dict[int, tuple[Schema, Callable[[Any], bool]]] = {}


def _accepts(schema: Schema) -> Callable[[Any], bool]:
    """``schema`` compiled to ``value -> True`` when :func:`_first_problem` finds nothing
    (False: look); memoised per schema object."""
    found = _ACCEPTS.get(id(schema))
    if found is not None and found[0] is schema:
        return found[1]
    test = _compile_accepts(schema)
    _ACCEPTS[id(schema)] = (schema, test)
    return test


def _compile_accepts(schema: Schema) -> Callable[[Any], bool]:
    if type(schema) is Required:
        inner = _accepts(schema.schema)
        return lambda value: value is not None and inner(value)
    if type(schema) is _Any:
        return lambda value: True
    if type(schema) is Leaf:
        leaf = schema.test
        return lambda value: value is None or leaf(value) is None
    if type(schema) is ListOf:
        item, nulls = _accepts(schema.item), schema.nulls

        def accepts_list(value: Any) -> bool:
            if value is None:
                return True
            if not isinstance(value, list):
                return False
            for entry in value:
                if (entry is None and not nulls) or not item(entry):
                    return False
            return True
        return accepts_list
    open_ = OPEN in schema
    allowed = frozenset(k for k in schema if k != OPEN)
    fields = tuple((key, _accepts(sub)) for key, sub in schema.items() if key != OPEN)

    def accepts_mapping(value: Any) -> bool:
        if value is None:
            return True
        if not isinstance(value, dict) or (not open_ and not allowed.issuperset(value)):
            return False
        get = value.get
        for key, field_ok in fields:
            if not field_ok(get(key)):
                return False
        return True
    return accepts_mapping


def _first_problem(value: Any, schema: Schema, path: str = "") -> SchemaProblem | None:
    """The problem :func:`check` reports, found by walking the document in order.

    A path is kept as (parent, key or index) links and spelled out only for a problem: a
    cluster's manifests hold millions of fields and nearly all are fine."""
    stack: list[tuple[Any, Schema, Any]] = [(value, schema, path)]
    while stack:
        value, schema, where = stack.pop()
        if type(schema) is Required:
            if value is None:
                return SchemaProblem(_spell(where), "required, but missing or null")
            schema = schema.schema
        if value is None or type(schema) is _Any:
            continue
        if type(schema) is Leaf:
            problem = schema.test(value)
            if problem is None:
                continue
            if isinstance(problem, tuple):
                key, problem = problem
                return SchemaProblem(_join(_spell(where), escape(shorten(key, 60))), problem)
            return SchemaProblem(_spell(where), problem)
        if type(schema) is ListOf:
            if not isinstance(value, list):
                return SchemaProblem(_spell(where), f"expected a list, got {_type_name(value)}")
            item, nulls = schema.item, schema.nulls
            for index in range(len(value) - 1, -1, -1):
                if value[index] is None and not nulls:
                    return SchemaProblem(f"{_spell(where)}[{index}]", "null list entry")
                stack.append((value[index], item, (where, index)))
        elif not isinstance(value, dict):
            return SchemaProblem(_spell(where), f"expected a mapping, got {_type_name(value)}")
        else:
            if OPEN not in schema:
                for key in value:
                    if key not in schema:
                        return _fields_problem(value, schema, _spell(where))
            for key, sub, required in _fields_reversed(schema):
                if key in value:
                    stack.append((value[key], sub, (where, key)))
                elif required:
                    stack.append((None, sub, (where, key)))
    return None


_FIELDS: dict[int, tuple[dict, tuple]] = {}


def _fields_reversed(schema: dict) -> tuple:
    """The mapping schema's fields, last first, with whether each is required (memoised)."""
    found = _FIELDS.get(id(schema))
    if found is None or found[0] is not schema:
        fields = tuple((key, schema[key], isinstance(schema[key], Required))
                       for key in reversed(list(schema)) if key != OPEN)
        found = _FIELDS[id(schema)] = (schema, fields)
    return found[1]


def _spell(where: Any) -> str:
    """A path's text: ``spec.ingress[0].from``."""
    parts = []
    while not isinstance(where, str):
        where, part = where
        parts.append(part)
    text = where
    for part in reversed(parts):
        text = f"{text}[{part}]" if isinstance(part, int) and not isinstance(part, bool) \
            else _join(text, str(part))
    return text


def _fields_problem(value: dict, schema: dict, path: str) -> SchemaProblem | None:
    if OPEN in schema:
        return None
    for key in value:
        if key not in schema:
            hint = difflib.get_close_matches(str(key), [k for k in schema if k != OPEN], n=1)
            suffix = f" (did you mean {quote(hint[0])}?)" if hint else ""
            return SchemaProblem("", f"unknown field {quote(_join(path, str(key)), 120)}{suffix}")
    return None
