"""Topology specs are plain data; validate() rejects what the kernel would refuse."""

from dataclasses import replace
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

import pytest

from tracer.errors import InputError
from kernel_samples import one_node_topology, two_node_topology
from tracer.kernel.topology import PodSpec, RouteSpec, validate


def test_sample_topologies_are_valid_and_searchable():
    spec = two_node_topology(vxlan=True)
    validate(spec)
    node, pod = spec.pod("default/web")
    assert (node.name, str(pod.ip)) == ("node-2", "10.65.1.2")
    assert spec.owner_of(IPv4Address("10.65.0.1"))[0].name == "node-1"    # a VTEP address
    assert spec.owner_of(IPv4Address("8.8.8.8")) == (None, None)


def with_node(spec, **changes):
    return replace(spec, nodes=(replace(spec.nodes[0], **changes),) + spec.nodes[1:])


@pytest.mark.parametrize("change, message", [
    (dict(pods=(PodSpec("a/x", IPv4Address("10.65.0.9"), "cali0123456789abcdef"),)),
     "bad host-side interface name"),
    (dict(pods=(PodSpec("a/x", IPv4Address("10.65.0.9"), "eth0"),)), "bad host-side"),
    (dict(routes=(RouteSpec(IPv4Network("10.66.0.0/26"), "tunl0",
                            via=IPv4Address("172.18.0.12"), onlink=True),)), "tunl0"),
    (dict(routes=(RouteSpec(IPv4Network("10.66.0.0/26"), None),)), "needs a device"),
])
def test_invalid_nodes_are_rejected(change, message):
    with pytest.raises(InputError, match=message):
        validate(with_node(one_node_topology(), **change))


def test_duplicates_are_rejected():
    spec = two_node_topology(vxlan=False)
    clash = replace(spec.nodes[1], underlay=spec.nodes[0].underlay)
    with pytest.raises(InputError, match="duplicate underlay address"):
        validate(replace(spec, nodes=(spec.nodes[0], clash)))
    pods = spec.nodes[0].pods + (replace(spec.nodes[0].pods[0], key="default/other"),)
    with pytest.raises(InputError, match="duplicate pod IP"):
        validate(with_node(spec, pods=pods))
    with pytest.raises(InputError, match="gateway address is also a node address"):
        validate(replace(spec, underlay_gateway=IPv4Interface("172.18.0.11/24")))
