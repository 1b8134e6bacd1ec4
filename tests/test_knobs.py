"""Verdicts do not depend on the knobs felix is configured with (issue #8, part 1).

Each case rewrites a bundled scenario with random FelixConfiguration knobs (VXLAN port and
VNI, WireGuard port and device name, tunnel MTUs, the mark mask, the interface prefix) and
pool encapsulations, then traces every ordered pod pair on the scenario's ports: the verdict,
the drop reason and where the packet was delivered must be what they are with the defaults.
The knobs really reach the dataplane: the test also checks they show in what was traced.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from knobs import ENCAPSULATIONS, felix_knobs, rewrite

from tracer.dataplane.interfaces import IfaceKind
from tracer.dataplane.trace import EncapRecord
from tracer.model.loader import load_cluster
from tracer.trace.assemble import build_dataplane
from tracer.trace.tracing import TraceRequest, trace_packet

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ["multinode-vxlan", "multinode-ipip", "multinode-routed", "multinode-wireguard",
             "backend-from-frontend", "recipe-04-deny-other-namespaces"]


def verdicts(directory: Path) -> dict[tuple[str, str, int], tuple]:
    """(from, to, port) -> (verdict, reason, delivered to) for every ordered pod pair."""
    cluster = load_cluster([str(directory)])
    dataplane = build_dataplane(cluster, version="3.32")
    out = {}
    for src in sorted(cluster.endpoints):
        for dst in sorted(cluster.endpoints):
            for port in (80, 6379):
                trace = trace_packet(dataplane, TraceRequest(src, dst, port=port))
                out[(src, dst, port)] = (trace.verdict, trace.reason, trace.delivered_to)
    return out


BASELINES: dict[str, dict] = {}


def baseline(name: str) -> dict:
    if name not in BASELINES:
        BASELINES[name] = verdicts(ROOT / "scenarios" / name)
    return BASELINES[name]


@pytest.mark.parametrize("name", SCENARIOS)
@settings(max_examples=6, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(knobs=felix_knobs(), encapsulation=st.sampled_from([None, *ENCAPSULATIONS]))
def test_verdicts_do_not_depend_on_felix_knobs(tmp_path_factory, name, knobs, encapsulation):
    directory = rewrite(ROOT / "scenarios" / name, tmp_path_factory.mktemp(name) / name,
                        felix=knobs, encapsulation=encapsulation)
    assert verdicts(directory) == baseline(name)


def test_knobs_reach_the_dataplane(tmp_path):
    """The VXLAN port, VNI, prefix and MTU end up in the node and on the wire."""
    knobs = {"vxlanPort": 4790, "vxlanVNI": 77, "interfacePrefix": "xy", "vxlanMTU": 1400,
             "iptablesMarkMask": 0x0FF00000}
    directory = rewrite(ROOT / "scenarios" / "multinode-vxlan", tmp_path / "s", felix=knobs,
                        encapsulation=None)
    cluster = load_cluster([str(directory)])
    dataplane = build_dataplane(cluster, version="3.32")
    node = dataplane.nodes["node-1"]
    vxlan, = node.interfaces.of_kind(IfaceKind.VXLAN)
    assert (vxlan.udp_port, vxlan.mtu) == (4790, 1400)
    workloads = node.interfaces.of_kind(IfaceKind.WORKLOAD)
    assert workloads and all(w.name.startswith("xy") and w.mtu == 1400 for w in workloads)
    trace = trace_packet(dataplane, TraceRequest("shop/frontend-7d4b9", "shop/backend-5f8c2",
                                                 port=6379))
    encap = next(s for hop in trace.hops for s in hop.stages if isinstance(s, EncapRecord))
    assert encap.outer.dport == 4790 and "VNI 77" in encap.detail
    assert trace.delivered_to == "pod shop/backend-5f8c2"
    marks = {e.mark_after for _, e in trace.netfilter_events()}
    assert all(mark & ~0x0FF00000 == 0 for mark in marks), [hex(m) for m in marks]


def test_a_foreign_vxlan_port_is_delivered_to_the_host(tmp_path):
    """With vxlanPort 4790, a UDP packet to 4789 on a node is not VXLAN: the host gets it."""
    directory = rewrite(ROOT / "scenarios" / "multinode-vxlan", tmp_path / "s",
                        felix={"vxlanPort": 4790}, encapsulation=None)
    cluster = load_cluster([str(directory)])
    dataplane = build_dataplane(cluster, version="3.32")
    node = dataplane.nodes["node-2"]
    assert node.interfaces.tunnel_receiving(17, 4789) is None
    assert node.interfaces.tunnel_receiving(17, 4790).kind is IfaceKind.VXLAN
