"""`packet --reply` (trace the answer) and `--icmp-type/--icmp-code` (issue #15, packets
people ask about)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from tracer.cli import cli
from tracer.dataplane.trace import ConntrackRecord
from tracer.errors import InputError
from tracer.explain import explain
from tracer.model.loader import load_cluster
from tracer.trace.assemble import build_dataplane
from tracer.trace.tracing import TraceRequest, trace_packet

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"


def trace(directory: Path, **request):
    cluster = load_cluster([str(directory)])
    dataplane = build_dataplane(cluster, version="3.32")
    return explain(dataplane, trace_packet(dataplane, TraceRequest(**request)))


def test_reply_traces_the_syn_ack_back_through_conntrack():
    result = trace(SCENARIOS / "backend-from-frontend", source="myns/frontend",
                   destination="myns/backend", port=6379, reply=True)
    assert (result.source, result.destination) == ("myns/backend", "myns/frontend")
    assert result.packet.sport == 6379 and result.packet.dport == 40000
    assert result.packet.tcp_flags == 0x12                     # SYN-ACK
    states = [(s.ctstate, s.note) for hop in result.hops for s in hop.stages
              if isinstance(s, ConntrackRecord)]
    assert states and states[0][0] == "ESTABLISHED" and states[0][1].startswith("reply")
    assert result.verdict == "allowed" and result.delivered_to == "pod myns/frontend"
    assert any("tracing the SYN-ACK" in line for line in result.assumptions)


def test_reply_of_a_dropped_request_traces_the_request_and_says_so():
    result = trace(SCENARIOS / "backend-from-frontend", source="myns/other",
                   destination="myns/backend", port=6379, reply=True)
    assert result.verdict == "dropped" and result.reason == "default-deny"
    assert result.source == "myns/other"
    assert any("request was dropped" in line for line in result.assumptions)


def test_reply_passes_where_the_same_packet_as_a_new_connection_is_denied():
    """batch may not open a connection to backend, but its SYN-ACK to backend's connection is
    a conntrack reply, accepted before policy on both nodes."""
    scenario = SCENARIOS / "multinode-vxlan"
    new = trace(scenario, source="shop/batch-2k9xq", destination="shop/backend-5f8c2",
                sport=80, port=40000)
    assert new.verdict == "dropped" and new.reason == "default-deny"
    reply = trace(scenario, source="shop/backend-5f8c2", destination="shop/batch-2k9xq",
                  port=80, reply=True)
    assert (reply.source, reply.packet.sport, reply.packet.dport) == ("shop/batch-2k9xq", 80,
                                                                       40000)
    assert reply.verdict == "allowed" and reply.delivered_to == "pod shop/backend-5f8c2"


ICMP_POLICY = """
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: echo-only, namespace: myns}
spec:
  selector: role == 'backend'
  types: [Ingress]
  ingress:
  - action: Allow
    protocol: ICMP
    icmp: {type: 8, code: 0}
"""


@pytest.fixture
def icmp_scenario(tmp_path: Path) -> Path:
    for path in (SCENARIOS / "backend-from-frontend").glob("*.yaml"):
        if path.name != "policy.yaml":
            (tmp_path / path.name).write_text(path.read_text())
    (tmp_path / "policy.yaml").write_text(ICMP_POLICY)
    return tmp_path


@pytest.mark.parametrize("icmp_type, icmp_code, verdict", [
    (None, None, "allowed"), (8, 0, "allowed"), (8, 1, "dropped"), (13, 0, "dropped")])
def test_icmp_type_and_code_reach_calico_rules(icmp_scenario, icmp_type, icmp_code, verdict):
    result = trace(icmp_scenario, source="myns/frontend", destination="myns/backend",
                   protocol="icmp", icmp_type=icmp_type, icmp_code=icmp_code)
    assert result.packet.icmp_type == (8 if icmp_type is None else icmp_type)
    assert result.verdict == verdict


def test_icmp_type_needs_protocol_icmp():
    with pytest.raises(InputError, match="--protocol icmp"):
        trace(SCENARIOS / "backend-from-frontend", source="myns/frontend",
              destination="myns/backend", icmp_type=3)


def test_cli_reply_and_icmp_options(icmp_scenario):
    runner = CliRunner()
    ok = runner.invoke(cli, ["packet", "-f", str(icmp_scenario), "--from", "myns/frontend",
                             "--to", "myns/backend", "--protocol", "icmp", "--icmp-type", "13",
                             "--verbosity", "minimal"])
    assert ok.exit_code == 0 and "dropped" in ok.output
    bad = runner.invoke(cli, ["packet", "-f", str(icmp_scenario), "--from", "myns/frontend",
                              "--to", "myns/backend", "--reply", "--state", "established"])
    assert isinstance(bad.exception, InputError) and "--reply" in str(bad.exception)
