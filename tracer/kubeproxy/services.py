"""kube-proxy's view of the cluster: one record per Service port, with its endpoints.

Mirrors ``pkg/proxy`` (``ServicePortName``, the EndpointSlice cache): a Service port collects
the addresses of every EndpointSlice labelled with the Service's name whose port entry has the
same name and protocol; endpoints are deduplicated and sorted by their ``"ip:port"`` string
(``byEndpoint`` in endpointslicecache.go), which is the order of the KUBE-SVC rules.
Headless and ExternalName Services (no cluster IP) are not proxied.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address

from tracer.kubeproxy import names
from tracer.model.cluster import Cluster, EndpointSlice, Pod, Service, ServicePort


@dataclass(frozen=True)
class Backend:
    """One endpoint of a Service port; ``pod`` names the pod holding the address, if any."""

    ip: IPv4Address
    port: int
    pod: str | None = None

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"

    def describe(self) -> str:
        return f"{self.pod} ({self.address})" if self.pod else self.address


@dataclass(frozen=True)
class ServicePortView:
    """A Service port as kube-proxy programs it."""

    service: Service
    port: ServicePort
    endpoints: tuple[Backend, ...]

    @property
    def name(self) -> str:
        """``ServicePortName.String()``, the hash input and the rules' comment text."""
        return names.service_port_name(self.service.namespace, self.service.name,
                                       self.port.name)

    @property
    def protocol(self) -> str:
        return self.port.protocol.lower()

    @property
    def cluster_ip(self) -> IPv4Address:
        assert self.service.cluster_ip is not None
        return self.service.cluster_ip

    @property
    def svc_chain(self) -> str:
        return names.svc_chain(self.name, self.protocol)

    @property
    def ext_chain(self) -> str:
        return names.ext_chain(self.name, self.protocol)

    def sep_chain(self, backend: Backend) -> str:
        return names.sep_chain(self.name, self.protocol, backend.address)

    @property
    def node_port(self) -> int:
        """0 when the port has none. ``ExternallyAccessible`` for our model: a NodePort."""
        return self.port.node_port or 0

    @property
    def label(self) -> str:
        return f"svc/{self.service.namespace}/{self.service.name}:{self.port.port}"


def service_ports(cluster: Cluster) -> list[ServicePortView]:
    """Every proxied Service port, sorted by namespace, name and port order. (kube-proxy walks a
    Go map, so a real node's rule order across Services is arbitrary; ours is stable.)"""
    views = []
    for key in sorted(cluster.services):
        svc = cluster.services[key]
        if svc.cluster_ip is None or svc.type == "ExternalName":
            continue
        slices = [s for s in cluster.endpoint_slices
                  if s.namespace == svc.namespace and s.service == svc.name]
        for port in svc.ports:
            found = (_from_slices(cluster, port, slices) if slices
                     else _from_selector(cluster, svc, port))
            unique = {b.address: b for b in found}
            views.append(ServicePortView(svc, port, tuple(unique[a] for a in sorted(unique))))
    return views


def _from_slices(cluster: Cluster, port: ServicePort,
                 slices: list[EndpointSlice]) -> list[Backend]:
    out = []
    for slice_ in slices:
        for name, number, protocol in slice_.ports:
            if (name or None) == (port.name or None) and protocol.upper() == port.protocol.upper():
                out += [Backend(ip, number, _pod_at(cluster, ip)) for ip in slice_.addresses]
    return out


def _from_selector(cluster: Cluster, svc: Service, port: ServicePort) -> list[Backend]:
    """No EndpointSlice in the manifests: what the EndpointSlice controller would publish for
    a selector Service (pods whose labels match, the target port resolved per pod)."""
    if not svc.selector:
        return []
    out = []
    for pod in sorted(cluster.pods.values(), key=lambda p: p.key):
        if pod.namespace != svc.namespace:
            continue
        if any(pod.labels.get(k) != v for k, v in svc.selector.items()):
            continue
        number = _target_port(pod, port)
        if number is not None:
            out.append(Backend(pod.ip, number, pod.key))
    return out


def _target_port(pod: Pod, port: ServicePort) -> int | None:
    if isinstance(port.target_port, int):
        return port.target_port
    text = str(port.target_port)
    if text.isdigit():
        return int(text)
    for cp in pod.ports:
        if cp.name == text and cp.protocol.upper() == port.protocol.upper():
            return cp.port
    return None


def _pod_at(cluster: Cluster, ip: IPv4Address) -> str | None:
    ep = cluster.endpoint_by_ip(ip)
    return ep.key if ep is not None else None
