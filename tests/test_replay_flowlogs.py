"""``replay --flow-logs``: each flow record replayed as its opening packet (and, allowed, the
reply), ends placed by name, address or aggregated name; a per-flow verdict table that says
whether the replay agrees with the action Calico logged."""

from __future__ import annotations

import json

import pandas as pd

from replay_traffic import BACKEND_FROM_FRONTEND
from tracer.cli import main


def felix(**fields) -> dict:
    record = {"start_time": 1764000000, "end_time": 1764000300, "source_ip": None,
              "source_name": "-", "source_name_aggr": "-", "source_namespace": "-",
              "source_port": None, "source_type": "wep", "source_labels": None,
              "dest_ip": None, "dest_name": "-", "dest_name_aggr": "-",
              "dest_namespace": "-", "dest_port": 6379, "dest_type": "wep",
              "dest_labels": None, "proto": "tcp", "action": "allow", "reporter": "dst",
              "policies": {"all_policies": []}, "bytes_in": 100, "bytes_out": 50,
              "num_flows": 1, "num_flows_started": 1, "num_flows_completed": 1,
              "packets_in": 2, "packets_out": 1}
    record.update(fields)
    return record


RECORDS = [
    # frontend -> backend by exact names: allowed by the KNP; the reply comes back.
    felix(source_namespace="myns", source_name="frontend", dest_namespace="myns",
          dest_name="backend"),
    # other -> backend by address; Calico logged a deny, and so does the replay.
    felix(source_ip="192.168.0.3", source_port=41000, dest_ip="192.168.0.1", action="deny",
          policies={"all_policies": ["0|default|myns/knp.default.backend-allow-frontend|"
                                     "deny|-1"]}),
    # aggregated names (felix's flowLogsFileAggregationKindForAllowed 2): prefix match.
    felix(source_namespace="myns", source_name_aggr="front*", dest_namespace="myns",
          dest_name_aggr="back*"),
    # the public network has no address in the log: a documentation address stands in.
    felix(source_type="net", source_name_aggr="pub", dest_namespace="myns",
          dest_name="backend", action="deny"),
    # a namespace the cluster does not have.
    felix(source_namespace="elsewhere", source_name="ghost", dest_namespace="myns",
          dest_name="backend"),
]


def test_flow_log_records_are_replayed_as_their_opening_packets(tmp_path, capsys):
    log = tmp_path / "flows.log"
    log.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    main(["replay", "--no-cache", "--engine", "reference", "-f", str(BACKEND_FROM_FRONTEND),
          "--flow-logs", str(log), "--out", str(tmp_path / "o")])
    out = capsys.readouterr().out
    assert "Top denied flows" in out
    flows = pd.read_parquet(tmp_path / "o" / "flows.parquet").set_index("flow")
    assert list(flows["verdict"]) == ["allowed", "dropped", "allowed", "dropped",
                                      "not modelled"]
    first = flows.loc[0]
    assert (first["source"], first["destination"], first["reply_verdict"]) == (
        "myns/frontend", "myns/backend", "allowed")
    assert first["policy"] == "KubernetesNetworkPolicy myns/backend-allow-frontend"
    assert first["agrees"] and first["allowed"] == 2
    assert (flows.loc[1, "reason"], flows.loc[1, "agrees"], flows.loc[1, "sport"]) == (
        "default-deny", True, 41000)
    assert "knp.default.backend-allow-frontend" in flows.loc[1, "logged_policies"]
    assert flows.loc[2, "source"] == "myns/frontend"
    assert "taken as myns/frontend" in flows.loc[2, "why"]
    assert flows.loc[3, "src"] == "203.0.113.10" and flows.loc[3, "reason"] == "default-deny"
    assert flows.loc[3, "agrees"]
    assert "elsewhere/ghost" in flows.loc[4, "why"]
    packets = pd.read_parquet(tmp_path / "o" / "packets.parquet")
    # opening + reply for the two allowed records, one packet for each other record
    assert len(packets) == 7
    assert list(packets[packets["flow"] == 0]["ct_state"]) == ["NEW", "ESTABLISHED"]


GOLDMANE = {"id": "1", "flow": {"Key": {
    "sourceName": "other", "sourceNamespace": "myns", "sourceType": "WorkloadEndpoint",
    "destName": "backend", "destNamespace": "myns", "destType": "WorkloadEndpoint",
    "destPort": "6379", "proto": "tcp", "reporter": "Dst", "action": "Allow",
    "policies": {"enforcedPolicies": []}},
    "startTime": "1764000000", "endTime": "1764000015", "packetsIn": "1", "packetsOut": "0",
    "bytesIn": "60", "bytesOut": "0"}}


def test_goldmane_records_are_placed_by_name_and_disagreements_show(tmp_path, capsys):
    log = tmp_path / "goldmane.json"
    log.write_text(json.dumps(GOLDMANE) + "\n")
    main(["replay", "--no-cache", "--engine", "reference", "-f", str(BACKEND_FROM_FRONTEND),
          "--flow-logs", str(log), "--out", str(tmp_path / "o")])
    capsys.readouterr()
    flow = pd.read_parquet(tmp_path / "o" / "flows.parquet").iloc[0]
    assert (flow["source"], flow["destination"], flow["dport"]) == (
        "myns/other", "myns/backend", 6379)
    # Goldmane logged Allow; these manifests deny it: the table says they disagree.
    assert (flow["logged_action"], flow["verdict"], flow["agrees"]) == (
        "allow", "dropped", False)
