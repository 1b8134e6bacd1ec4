"""``replay --workers N``: the capture split by flow over Dask processes gives the same tables,
row for row, as one process."""

from __future__ import annotations

import pandas as pd

from replay_traffic import BACKEND_FROM_FRONTEND, many_flows_capture
from tracer.cli import main


def test_two_workers_give_the_single_process_tables(tmp_path, capsys):
    cap = many_flows_capture(tmp_path / "many.pcap")
    for workers in ("1", "2"):
        main(["replay", "--no-cache", "--engine", "reference", "-f",
              str(BACKEND_FROM_FRONTEND), str(cap), "--workers", workers, "--out",
              str(tmp_path / workers)])
    capsys.readouterr()
    for table in ("packets", "flows"):
        one = pd.read_parquet(tmp_path / "1" / f"{table}.parquet")
        two = pd.read_parquet(tmp_path / "2" / f"{table}.parquet")
        pd.testing.assert_frame_equal(one, two)
    packets = pd.read_parquet(tmp_path / "1" / "packets.parquet")
    flows = pd.read_parquet(tmp_path / "1" / "flows.parquet")
    # 30 connections and 6 stray SYN-ACKs; the split kept every flow's conntrack state.
    assert len(flows) == 36
    assert (flows["verdict"] == "allowed").sum() == 15
    assert set(packets[packets["tcp_flags"] == "SYN,ACK"]["ct_state"]) == {
        "ESTABLISHED", "INVALID"}
    assert (packets["reason"] == "conntrack-invalid").sum() >= 6
    # each flow's explanation quotes its own packet (explanations are shared across ports)
    for _, flow in flows[flows["reason"] == "default-deny"].iterrows():
        assert f":{flow['sport']} -> " in flow["why"]
    # the tshark-visible comments come out the same too
    assert (tmp_path / "2" / "replay.pcapng").read_bytes() == \
        (tmp_path / "1" / "replay.pcapng").read_bytes()
