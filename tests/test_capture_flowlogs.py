"""Calico flow logs in three shapes (felix flows.log, Goldmane protojson, Whisker API) -> one
typed table; bad records -> one line naming file, line and field."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tracer.capture.flowlogs import COLUMNS, read_flow_logs
from tracer.errors import InputError

DATA = Path(__file__).resolve().parent / "data" / "flowlogs"


def test_felix_flow_log_keeps_what_is_known_of_the_five_tuple():
    table = read_flow_logs(str(DATA / "felix-flows.log"))
    assert list(table.columns) == list(COLUMNS)
    assert {c: str(t) for c, t in table.dtypes.items()} == COLUMNS
    denied, aggregated, icmp = (table.iloc[i] for i in range(3))
    assert (denied["source_ip"], denied["source_port"], denied["dest_ip"],
            denied["dest_port"], denied["protocol"]) == ("10.65.0.3", 40000, "10.65.0.1", 6379, 6)
    assert (denied["action"], denied["reporter"]) == ("deny", "dst")
    assert denied["source_labels"] == {"role": "batch", "app": "other"}
    assert denied["policies"] == [{"policy_index": 0, "tier": "default", "namespace": "myns",
                                   "name": "knp.default.backend-allow-frontend",
                                   "action": "deny", "kind": "", "rule_index": -1}]
    assert denied["start_time"] == pd.Timestamp("2025-11-24T16:00:00Z")
    # aggregated by prefix: no IPs, no source port, names kept for resolving pods
    assert pd.isna(aggregated["source_ip"]) and pd.isna(aggregated["source_port"])
    assert (aggregated["source_name"], aggregated["source_name_aggr"],
            aggregated["source_namespace"]) == ("-", "frontend-7d4b9-*", "myns")
    assert (aggregated["dest_service_name"], aggregated["dest_service_port"]) == ("backend", 6379)
    assert (aggregated["num_flows"], aggregated["num_flows_started"],
            aggregated["packets_out"]) == (12, 10, 42)
    assert icmp["protocol"] == 1 and pd.isna(icmp["dest_port"]) and icmp["policies"] == []
    assert icmp["dest_type"] == "net" and icmp["line"] == 3


def test_goldmane_flows_in_protojson_and_proto_names():
    table = read_flow_logs(str(DATA / "goldmane-flows.json"))
    first, second = table.iloc[0], table.iloc[1]
    assert first["format"] == "goldmane" and pd.isna(first["source_ip"])
    assert (first["source_name"], first["source_type"], first["dest_port"]) == (
        "frontend-7d4b9-*", "wep", 6379)
    assert (first["action"], first["reporter"], first["num_flows_started"]) == ("allow", "dst", 2)
    assert first["policies"][0]["kind"] == "NetworkPolicy"
    assert first["pending_policies"][0]["name"] == "lockdown"
    assert first["dest_labels"] == {"role": "backend"}
    assert (second["source_name"], second["source_type"], second["protocol"]) == ("pvt", "net", 17)
    assert second["policies"][0]["kind"] == "EndOfTier" and second["action"] == "deny"


def test_whisker_api_flows():
    row = read_flow_logs(str(DATA / "whisker-flows.json")).iloc[0]
    assert (row["format"], row["source_name"], row["source_namespace"]) == ("whisker", "pub", "")
    assert row["dest_labels"] == {"role": "backend", "tier": "data"}
    assert row["start_time"] == pd.Timestamp("2025-11-24T16:00:00Z")
    assert row["policies"][0]["rule_index"] == 1


BASE = json.loads((DATA / "felix-flows.log").read_text().splitlines()[0])


@pytest.mark.parametrize("field,value,problem", [
    ("proto", "tcpx", "proto: unknown protocol 'tcpx'"),
    ("action", "maybe", "action: expected one of allow, deny, pass, got 'maybe'"),
    ("reporter", None, "reporter: expected one of src, dst"),
    ("dest_port", 70000, "dest_port: 70000 out of range"),
    ("source_port", "eighty", "source_port: expected an integer"),
    ("source_ip", "10.0.0.300", "source_ip: not an IP address"),
    ("start_time", "yesterday", "start_time: not an RFC 3339 time"),
    ("source_labels", {"labels": ["novalue"]}, "source_labels: label 'novalue' is not key=value"),
    ("policies", {"all_policies": ["garbage"]}, "policies: expected 'index|tier|name|action'"),
    ("source_type", "pod", "source_type: expected one of wep, hep, ns, net"),
])
def test_a_bad_record_names_file_line_and_field(tmp_path, field, value, problem):
    path = tmp_path / "flows.log"
    bad = dict(BASE, **{field: value})
    path.write_text(json.dumps(BASE) + "\n\n" + json.dumps(bad) + "\n")
    with pytest.raises(InputError) as err:
        read_flow_logs(str(path))
    assert str(err.value).startswith(f"{path}: line 3: {problem}")


@pytest.mark.parametrize("text,problem", [
    ("{not json\n", "line 1: not JSON"),
    ('["a"]', "line 1: record: not a JSON object"),
    ('{"hello": 1}\n', "line 1: record: not a felix flow log, Goldmane flow or Whisker flow"),
])
def test_files_that_are_not_flow_logs(tmp_path, text, problem):
    path = tmp_path / "x.json"
    path.write_text(text)
    with pytest.raises(InputError, match=problem):
        read_flow_logs(str(path))


def test_an_empty_file_is_an_empty_typed_table(tmp_path):
    path = tmp_path / "empty.log"
    path.write_text("\n")
    table = read_flow_logs(str(path))
    assert len(table) == 0 and {c: str(t) for c, t in table.dtypes.items()} == COLUMNS
    with pytest.raises(InputError, match="cannot read flow log"):
        read_flow_logs(str(tmp_path / "missing.log"))
