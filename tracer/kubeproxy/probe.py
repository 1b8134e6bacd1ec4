"""``svc/NS/NAME[:PORT]`` destinations: which Service port, cluster IP and backends.

``PORT`` (or ``--port``) is the Service's port number or port name; a Service with a single
port of the packet's protocol needs neither. Backends come in kube-proxy's order, the order
of the KUBE-SVC chain's rules, so ``--endpoint 2`` is the second KUBE-SEP jump.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address

from tracer.errors import InputError, quote
from tracer.kubeproxy.services import Backend, ServicePortView, service_ports
from tracer.model.cluster import Cluster

SERVICE_PREFIX = "svc/"


def is_service_ref(text: str | None) -> bool:
    return bool(text) and text.startswith(SERVICE_PREFIX)


@dataclass(frozen=True)
class ServiceTarget:
    """One Service port as a trace destination."""

    view: ServicePortView

    @property
    def cluster_ip(self) -> IPv4Address:
        return self.view.cluster_ip

    @property
    def port(self) -> int:
        return self.view.port.port

    @property
    def endpoints(self) -> tuple[Backend, ...]:
        return self.view.endpoints

    @property
    def label(self) -> str:
        return self.view.label

    @property
    def svc_chain(self) -> str:
        return self.view.svc_chain

    def sep_chain(self, index: int) -> str:
        return self.view.sep_chain(self.endpoints[index])


def resolve_service(cluster: Cluster, text: str, *, port: int | None = None,
                    protocol: str = "tcp") -> ServiceTarget:
    """Parse ``svc/NS/NAME[:PORT]`` against the cluster's Services."""
    namespace, name, port_text = _split(text)
    svc = cluster.services.get(f"{namespace}/{name}")
    if svc is None:
        raise InputError(f"no Service {namespace}/{name} in the cluster", obj="--to")
    views = [v for v in service_ports(cluster) if v.service is svc]
    if not views:
        kind = "ExternalName" if svc.type == "ExternalName" else "headless (clusterIP: None)"
        raise InputError(f"Service {namespace}/{name} is {kind}: kube-proxy does not proxy it",
                         obj="--to")
    if port_text is not None and port is not None and port_text != str(port):
        raise InputError(f"{text} names port {port_text} but --port is {port}", obj="--port")
    wanted = port_text if port_text is not None else (str(port) if port is not None else None)
    return ServiceTarget(_pick_port(views, wanted, protocol, f"{namespace}/{name}"))


def _split(text: str) -> tuple[str, str, str | None]:
    rest = text[len(SERVICE_PREFIX):]
    ref, sep, port = rest.partition(":")
    parts = ref.split("/")
    if len(parts) != 2 or not all(parts) or (sep and not port):
        raise InputError(f"{quote(text)}: expected svc/NAMESPACE/NAME or svc/NAMESPACE/NAME:PORT",
                         obj="--to")
    return parts[0], parts[1], port if sep else None


def _pick_port(views: list[ServicePortView], wanted: str | None, protocol: str,
               key: str) -> ServicePortView:
    same_proto = [v for v in views if v.protocol == protocol.lower()]
    listing = ", ".join(f"{v.port.port}/{v.protocol}"
                        + (f" ({v.port.name})" if v.port.name else "") for v in views)
    if wanted is None:
        if len(same_proto) == 1:
            return same_proto[0]
        raise InputError(f"Service {key} has ports {listing}: say which with "
                         f"svc/{key}:PORT or --port", obj="--to")
    for view in same_proto:
        if wanted in (str(view.port.port), view.port.name):
            return view
    raise InputError(f"Service {key} has no {protocol.upper()} port {wanted} "
                     f"(ports: {listing})", obj="--to")


def pick_endpoint(target: ServiceTarget, choice: str) -> int:
    """``--endpoint``: a 1-based position in kube-proxy's order, ``NS/POD``, ``POD`` (in the
    Service's namespace) or the backend's IP; returns the 0-based index."""
    backends = target.endpoints
    if not backends:
        raise InputError(f"{target.label} has no endpoints to pick from", obj="--endpoint")
    if choice.isdigit():
        number = int(choice)
        if not 1 <= number <= len(backends):
            raise InputError(f"{target.label} has {len(backends)} endpoints: pick 1.."
                             f"{len(backends)}", obj="--endpoint")
        return number - 1
    namespace = target.view.service.namespace
    for index, backend in enumerate(backends):
        names = {backend.address, str(backend.ip)}
        if backend.pod:
            names |= {backend.pod}
            if backend.pod.startswith(namespace + "/"):
                names.add(backend.pod.split("/", 1)[1])
        if choice in names:
            return index
    known = ", ".join(b.describe() for b in backends)
    raise InputError(f"{quote(choice)} is not an endpoint of {target.label} (endpoints: {known})",
                     obj="--endpoint")
