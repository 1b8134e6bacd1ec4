"""Known fields of every kind calico-trace reads, so a misspelt field is an error, not a no-op.

A schema is a nested description: a ``dict`` maps field name -> schema of its value,
:class:`ListOf` describes a list, :data:`ANY` accepts anything (free-form maps such as labels,
or parts of an object we never interpret, e.g. a container's probes). Field names come from the
Kubernetes API types and from ``api/pkg/apis/projectcalico/v3/*.go`` (json tags, v3.29 ... HEAD).

:func:`check` returns the dotted path of the first field the schema does not know, with a
close match if there is one; the loader turns that into an :class:`~tracer.errors.InputError`.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Union


class _Any:
    """Accepts any value (free-form maps, opaque sub-objects)."""

    def __repr__(self) -> str:
        return "ANY"


ANY = _Any()


@dataclass(frozen=True)
class ListOf:
    """A list whose items all follow ``item``."""

    item: "Schema"


Schema = Union[_Any, ListOf, dict]


def _fields(names: str, value: Schema = ANY) -> dict:
    return {name: value for name in names.split()}


# ------------------------------------------------------------------------- Kubernetes shapes

OBJECT_META = _fields(
    "name generateName namespace selfLink uid resourceVersion generation creationTimestamp "
    "deletionTimestamp deletionGracePeriodSeconds labels annotations ownerReferences "
    "finalizers managedFields clusterName")

LABEL_SELECTOR = {
    "matchLabels": ANY,
    "matchExpressions": ListOf(_fields("key operator values")),
}

CONTAINER_PORT = _fields("name hostPort containerPort protocol hostIP")

CONTAINER = {
    **_fields("name image command args workingDir envFrom env resources resizePolicy "
              "restartPolicy restartPolicyRules volumeMounts volumeDevices livenessProbe "
              "readinessProbe startupProbe lifecycle terminationMessagePath "
              "terminationMessagePolicy imagePullPolicy securityContext stdin stdinOnce tty"),
    "ports": ListOf(CONTAINER_PORT),
}

POD_SPEC = {
    **_fields("volumes ephemeralContainers restartPolicy terminationGracePeriodSeconds "
              "activeDeadlineSeconds dnsPolicy nodeSelector serviceAccountName serviceAccount "
              "automountServiceAccountToken nodeName hostNetwork hostPID hostIPC "
              "shareProcessNamespace securityContext imagePullSecrets hostname subdomain "
              "affinity schedulerName tolerations hostAliases priorityClassName priority "
              "dnsConfig readinessGates runtimeClassName enableServiceLinks preemptionPolicy "
              "overhead topologySpreadConstraints setHostnameAsFQDN os hostUsers "
              "schedulingGates resourceClaims resources hostnameOverride"),
    "containers": ListOf(CONTAINER),
    "initContainers": ListOf(CONTAINER),
}

NETWORK_POLICY_PEER = {
    "podSelector": LABEL_SELECTOR,
    "namespaceSelector": LABEL_SELECTOR,
    "ipBlock": _fields("cidr except"),
}

NETWORK_POLICY_PORT = _fields("protocol port endPort")

K8S_NETWORK_POLICY_SPEC = {
    "podSelector": LABEL_SELECTOR,
    "policyTypes": ANY,
    "ingress": ListOf({"from": ListOf(NETWORK_POLICY_PEER), "ports": ListOf(NETWORK_POLICY_PORT)}),
    "egress": ListOf({"to": ListOf(NETWORK_POLICY_PEER), "ports": ListOf(NETWORK_POLICY_PORT)}),
}

SERVICE_SPEC = {
    **_fields("selector clusterIP clusterIPs type externalIPs sessionAffinity loadBalancerIP "
              "loadBalancerSourceRanges externalName externalTrafficPolicy healthCheckNodePort "
              "publishNotReadyAddresses sessionAffinityConfig ipFamilies ipFamilyPolicy "
              "allocateLoadBalancerNodePorts loadBalancerClass internalTrafficPolicy "
              "trafficDistribution"),
    "ports": ListOf(_fields("name protocol appProtocol port targetPort nodePort")),
}

NODE_SPEC = _fields("podCIDR podCIDRs providerID unschedulable taints configSource externalID")


def _k8s(spec: Schema | None = None, **extra: Schema) -> dict:
    top = {"apiVersion": ANY, "kind": ANY, "metadata": OBJECT_META, "status": ANY}
    if spec is not None:
        top["spec"] = spec
    top.update(extra)
    return top


# ------------------------------------------------------------------------- Calico shapes

ENTITY_RULE = {
    **_fields("nets notNets selector notSelector namespaceSelector ports notPorts"),
    "services": _fields("name namespace"),
    "serviceAccounts": _fields("names selector"),
}

RULE = {
    **_fields("action ipVersion protocol notProtocol"),
    "icmp": _fields("type code"),
    "notICMP": _fields("type code"),
    "source": ENTITY_RULE,
    "destination": ENTITY_RULE,
    "http": {"methods": ANY, "paths": ListOf(_fields("exact prefix"))},
    "metadata": _fields("annotations"),
}

_POLICY_COMMON = {
    **_fields("tier order selector types serviceAccountSelector performanceHints"),
    "ingress": ListOf(RULE),
    "egress": ListOf(RULE),
}
CALICO_NP_SPEC = dict(_POLICY_COMMON)
CALICO_GNP_SPEC = {**_POLICY_COMMON,
                   **_fields("doNotTrack preDNAT applyOnForward namespaceSelector")}
STAGED_NP_SPEC = {**CALICO_NP_SPEC, "stagedAction": ANY}
STAGED_GNP_SPEC = {**CALICO_GNP_SPEC, "stagedAction": ANY}
STAGED_KNP_SPEC = {**K8S_NETWORK_POLICY_SPEC, "stagedAction": ANY}

TIER_SPEC = _fields("order defaultAction")
NETWORK_SET_SPEC = _fields("nets")
HOST_ENDPOINT_SPEC = {**_fields("node interfaceName expectedIPs profiles"),
                      "ports": ListOf(_fields("name protocol port"))}
PROFILE_SPEC = {"ingress": ListOf(RULE), "egress": ListOf(RULE), "labelsToApply": ANY}
IPPOOL_SPEC = {
    **_fields("cidr vxlanMode ipipMode natOutgoing disabled disableBGPExport blockSize "
              "nodeSelector namespaceSelector allowedUses assignmentMode"),
    # Deprecated v1-era forms still accepted by calicoctl.
    "ipip": _fields("enabled mode"),
    "nat-outgoing": ANY,
}
CALICO_NODE_SPEC = {
    **_fields("ipv4VXLANTunnelAddr vxlanTunnelMACAddr ipv6VXLANTunnelAddr vxlanTunnelMACAddrV6 "
              "orchRefs addresses interfaces"),
    "bgp": _fields("asNumber ipv4Address ipv6Address ipv4IPIPTunnelAddr routeReflectorClusterID"),
    "wireguard": _fields("interfaceIPv4Address interfaceIPv6Address"),
}

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
    "Pod": _k8s(POD_SPEC),
    "Node": _k8s(NODE_SPEC),
    "ServiceAccount": _k8s(None, secrets=ANY, imagePullSecrets=ANY,
                           automountServiceAccountToken=ANY),
    "Service": _k8s(SERVICE_SPEC),
    "EndpointSlice": _k8s(None, addressType=ANY, endpoints=ListOf(_fields(
        "addresses conditions hostname targetRef nodeName zone hints deprecatedTopology")),
        ports=ListOf(_fields("name protocol port appProtocol"))),
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
    "calico/Node": _k8s(CALICO_NODE_SPEC),
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
    """First unknown field or shape mismatch in ``value``, or None when it fits."""
    if isinstance(schema, _Any) or value is None:
        return None
    if isinstance(schema, ListOf):
        if not isinstance(value, list):
            return SchemaProblem(path, f"expected a list, got {type(value).__name__}")
        for index, item in enumerate(value):
            found = check(item, schema.item, f"{path}[{index}]")
            if found:
                return found
        return None
    if not isinstance(value, dict):
        return SchemaProblem(path, f"expected a mapping, got {type(value).__name__}")
    for key, sub in value.items():
        if key not in schema:
            hint = difflib.get_close_matches(str(key), list(schema), n=1)
            suffix = f" (did you mean {hint[0]!r}?)" if hint else ""
            return SchemaProblem("", f"unknown field {_join(path, str(key))!r}{suffix}")
        found = check(sub, schema[key], _join(path, str(key)))
        if found:
            return found
    return None
