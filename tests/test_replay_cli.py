"""``calico-trace replay`` end to end on captures written with scapy from the bundled scenarios:
verdicts, reasons and deciding policies per packet and per flow, conntrack across packets, the
saved tables, the annotated pcapng, and bad input."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from replay_traffic import (BACKEND_FROM_FRONTEND, MULTINODE_VXLAN, mixed_capture, pod_ips,
                            vxlan_capture)
from tracer.cli import main

POLICY = "KubernetesNetworkPolicy myns/backend-allow-frontend"


def replay(capsys, *args: str) -> str:
    main(["replay", "--no-cache", *args])
    return capsys.readouterr().out


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> Path:
    return mixed_capture(tmp_path_factory.mktemp("cap") / "mixed.pcap")


@pytest.fixture(scope="module")
def mixed_out(mixed, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("out") / "run"
    main(["replay", "--no-cache", "-f", str(BACKEND_FROM_FRONTEND), str(mixed), "--out",
          str(out), "--engine", "reference"])
    return out


def test_each_packet_gets_the_kernels_verdict(mixed_out):
    packets = pd.read_parquet(mixed_out / "packets.parquet")
    ips = pod_ips(BACKEND_FROM_FRONTEND)
    assert len(packets) == 14 and list(packets["frame"]) == list(range(1, 15))
    conn = packets.iloc[:8]                  # handshake, data both ways, FIN both ways
    assert set(conn["verdict"]) == {"allowed"}
    assert conn.iloc[0]["policy"] == POLICY and conn.iloc[0]["ct_state"] == "NEW"
    assert conn.iloc[0]["tier"] == "default" and conn.iloc[0]["direction"] == "ingress"
    assert conn.iloc[0]["entry"].startswith("node-1/cali")
    assert list(conn["ct_state"].iloc[1:]) == ["ESTABLISHED"] * 7
    assert conn.iloc[1]["policy"] == "established connection (conntrack)"
    assert conn.iloc[1]["source"] == "myns/backend" and conn.iloc[1]["src"] == ips["myns/backend"]
    denied = packets.iloc[8:10]              # other -> backend: SYN and its retransmission
    assert list(denied["reason"]) == ["default-deny"] * 2
    assert set(denied["deciding_chain"]) == {"cali-tw-" + _veth("myns/backend")}
    assert set(denied["policy"]) == {"end of tier default"}
    stray_synack = packets.iloc[10]          # no SYN before it: INVALID, felix drops it
    assert (stray_synack["verdict"], stray_synack["reason"], stray_synack["ct_state"]) == (
        "dropped", "conntrack-invalid", "INVALID")
    stray_ack = packets.iloc[11]             # nf_conntrack_tcp_loose=1 picks it up as NEW
    assert (stray_ack["verdict"], stray_ack["ct_state"], stray_ack["policy"]) == (
        "allowed", "NEW", POLICY)
    cut = packets.iloc[12]
    assert (cut["verdict"], cut["reason"]) == ("dropped", "malformed")
    assert cut["detail"] == "not parsed: frame ends inside the IPv4 header" and pd.isna(cut["src"])
    arp = packets.iloc[13]
    assert (arp["verdict"], arp["detail"]) == ("not parsed", "not parsed: ARP")


def test_flow_table(mixed_out):
    flows = pd.read_parquet(mixed_out / "flows.parquet").set_index("flow")
    assert len(flows) == 4                  # the connection, the denied pair, two strays
    conn = flows.loc[0]
    assert (conn["packets"], conn["allowed"], conn["verdict"]) == (8, 8, "allowed")
    assert conn["bytes"] == 8 * 40 + 10 + 20 and conn["policy"] == POLICY
    assert conn["last_seen"] - conn["first_seen"] == pd.Timedelta(milliseconds=70)
    denied = flows.loc[1]
    assert (denied["packets"], denied["dropped"], denied["verdict"], denied["reason"]) == (
        2, 2, "dropped", "default-deny")
    assert "myns/backend-allow-frontend" in denied["selected_by"]
    assert "Dropped on node-1" in denied["why"]
    assert flows.loc[2, "reason"] == "conntrack-invalid"


def test_no_tcp_loose_makes_the_stray_ack_invalid(mixed, tmp_path, capsys):
    replay(capsys, "-f", str(BACKEND_FROM_FRONTEND), str(mixed), "--out", str(tmp_path),
           "--no-tcp-loose", "--engine", "reference")
    stray_ack = pd.read_parquet(tmp_path / "packets.parquet").iloc[11]
    assert (stray_ack["verdict"], stray_ack["reason"], stray_ack["ct_state"]) == (
        "dropped", "conntrack-invalid", "INVALID")


def test_csv_and_parquet_hold_the_same_table(mixed_out):
    parquet = pd.read_parquet(mixed_out / "packets.parquet")
    csv = pd.read_csv(mixed_out / "packets.csv", keep_default_na=False, na_values=[""])
    assert list(csv.columns) == list(parquet.columns)
    assert list(csv["verdict"]) == list(parquet["verdict"])
    assert list(csv["reason"].fillna("")) == list(parquet["reason"].fillna(""))
    assert parquet["time"].dtype == "datetime64[ns, UTC]"


def test_parquet_round_trip_keeps_every_value_and_type(mixed, tmp_path):
    from tracer.capture import read_capture
    from tracer.model.loader import load_cluster
    from tracer.policy.felix.versions import resolve_version
    from tracer.replay.runner import replay_captures
    from tracer.replay.tables import flow_frame, packet_frame, save
    from tracer.trace.assemble import build_dataplane

    cluster = load_cluster([BACKEND_FROM_FRONTEND])
    dataplane = build_dataplane(cluster, version=resolve_version(cluster, None))
    capture = read_capture(str(mixed))
    told = []
    result = replay_captures(dataplane, [capture], progress=told.append)
    assert sum(told) == len(capture)              # the progress bar is told of every row
    packets = packet_frame(result)
    flows = flow_frame(packets, result)
    save(packets, tmp_path, "p")
    save(flows, tmp_path, "f")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "p.parquet"), packets)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "f.parquet"), flows)


def test_tshark_shows_the_verdict_comments(mixed_out):
    tshark = shutil.which("tshark")
    assert tshark, "tshark is not installed (make test installs it)"
    done = subprocess.run([tshark, "-r", str(mixed_out / "replay.pcapng"), "-T", "fields",
                           "-e", "frame.comment"], capture_output=True, text=True, timeout=60,
                          check=True)
    comments = done.stdout.splitlines()
    assert len(comments) == 13              # every IP frame; ARP has no IP bytes to write
    assert comments[0].startswith("calico-trace: allowed on node-1")
    assert POLICY in comments[0] and "conntrack NEW" in comments[0]
    assert comments[8].startswith("calico-trace: dropped [default-deny] on node-1")
    assert "end of tier default" in comments[8]
    assert "not parsed: frame ends inside the IPv4 header" in comments[12]


def test_summary_counts_and_top_denied(mixed, capsys):
    out = replay(capsys, "-f", str(BACKEND_FROM_FRONTEND), str(mixed), "--engine", "reference")
    assert "packets" in out and " 14 " in out
    assert "default-deny" in out and "conntrack-invalid" in out and "malformed" in out
    assert "Top denied flows" in out and "myns/other" in out


def test_vxlan_on_the_underlay_is_replayed_from_its_inner_source(tmp_path, capsys):
    cap = vxlan_capture(tmp_path / "underlay.pcap")
    replay(capsys, "-f", str(MULTINODE_VXLAN), str(cap), "--out", str(tmp_path / "o"),
           "--engine", "reference")
    packets = pd.read_parquet(tmp_path / "o" / "packets.parquet")
    assert list(packets["tunnel"]) == ["vxlan", "vxlan"]
    assert list(packets["source"]) == ["shop/frontend-7d4b9"] * 2
    assert packets.iloc[0]["entry"].startswith("node-1/cali")     # from the pod's veth
    assert packets.iloc[0]["verdict"] == "allowed" and packets.iloc[0]["node"] == "node-2"
    assert packets.iloc[0]["policy"] == "KubernetesNetworkPolicy shop/backend-allow-frontend"
    assert (packets.iloc[1]["verdict"], packets.iloc[1]["reason"], packets.iloc[1]["node"]) == (
        "dropped", "default-deny", "node-2")


def test_vxlan_at_the_receiving_underlay_is_decapsulated_there(tmp_path, capsys):
    cap = vxlan_capture(tmp_path / "underlay.pcap")
    replay(capsys, "-f", str(MULTINODE_VXLAN), str(cap), "--at", "node-2/eth0", "--out",
           str(tmp_path / "o"), "--engine", "reference")
    packets = pd.read_parquet(tmp_path / "o" / "packets.parquet")
    assert list(packets["entry"]) == ["node-2/eth0"] * 2
    assert list(packets["verdict"]) == ["allowed", "dropped"]
    assert packets.iloc[1]["reason"] == "default-deny"
    assert list(packets["source"]) == ["shop/frontend-7d4b9"] * 2


def test_at_a_pod_says_which_packets_did_not_cross_it(mixed, tmp_path, capsys):
    main(["replay", "--no-cache", "-f", str(BACKEND_FROM_FRONTEND), str(mixed), "--at",
          "myns/frontend", "--out", str(tmp_path), "--engine", "reference"])
    err = capsys.readouterr().err
    # other -> backend, SYN and its retransmission
    assert "--at myns/frontend: 2 packet(s) neither from nor to that pod" in err
    packets = pd.read_parquet(tmp_path / "packets.parquet")
    assert packets.iloc[0]["entry"] == "node-1/" + _veth("myns/frontend")


def test_reference_and_compiled_engines_give_the_same_tables(mixed, tmp_path, capsys):
    for engine in ("reference", "compiled"):
        replay(capsys, "-f", str(BACKEND_FROM_FRONTEND), str(mixed), "--out",
               str(tmp_path / engine), "--engine", engine)
    for table in ("packets", "flows"):
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "reference" / f"{table}.parquet"),
                                      pd.read_parquet(tmp_path / "compiled" / f"{table}.parquet"))


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from tracer.cli import main; main()",
                           "replay", "--no-cache", *args], capture_output=True, text=True,
                          timeout=120)


def test_a_capture_cut_inside_its_header_is_one_line_and_exit_2(mixed, tmp_path):
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(mixed.read_bytes()[:10])
    done = _run("-f", str(BACKEND_FROM_FRONTEND), str(cut))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and str(cut) in lines[0] and "Traceback" not in done.stderr


def test_a_capture_cut_inside_a_packet_keeps_the_packets_before(mixed, tmp_path, capsys):
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(mixed.read_bytes()[:-30])       # inside the last (ARP) record
    main(["replay", "--no-cache", "-f", str(BACKEND_FROM_FRONTEND), str(cut), "--out",
          str(tmp_path / "o"), "--engine", "reference"])
    err = capsys.readouterr().err
    assert "warning:" in err and str(cut) in err
    assert len(pd.read_parquet(tmp_path / "o" / "packets.parquet")) == 13


@pytest.mark.parametrize("args, names", [
    (["missing.pcap"], "missing.pcap"),
    (["{cap}", "--at", "myns/nosuch"], "myns/nosuch"),
    (["{cap}", "--at", "node-1/eth9"], "eth9"),
    ([], "capture"),
])
def test_bad_input_is_one_line(mixed, args, names, capsys):
    args = [a.format(cap=mixed) for a in args]
    with pytest.raises(SystemExit) as leaving:
        main(["replay", "--no-cache", "--engine", "reference", "-f",
              str(BACKEND_FROM_FRONTEND), *args])
    assert leaving.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and names in lines[0] and lines[0].startswith("calico-trace: error:")


def _veth(pod: str) -> str:
    from tracer.model.loader import load_cluster
    return load_cluster([BACKEND_FROM_FRONTEND]).endpoints[pod].interface


def test_hops_pcapng_shows_each_point_of_the_path_with_vxlan_framing(tmp_path, capsys):
    cap = vxlan_capture(tmp_path / "underlay.pcap")
    replay(capsys, "-f", str(MULTINODE_VXLAN), str(cap), "--out", str(tmp_path / "o"),
           "--hops", "--engine", "reference")
    tshark = shutil.which("tshark")
    assert tshark, "tshark is not installed (make test installs it)"
    done = subprocess.run([tshark, "-r", str(tmp_path / "o" / "hops.pcapng"), "-T", "fields",
                           "-E", "separator=|", "-e", "frame.interface_name", "-e", "vxlan.vni",
                           "-e", "frame.comment"], capture_output=True, text=True, timeout=60,
                          check=True)
    rows = [line.split("|") for line in done.stdout.splitlines()]
    # the allowed SYN: sent, on node-1's underlay in VXLAN, received; the denied one ends on
    # the underlay (dropped on node-2)
    assert [r[0] for r in rows] == ["shop/frontend-7d4b9 eth0", "node-1 eth0",
                                    "pod shop/backend-5f8c2 eth0", "shop/frontend-7d4b9 eth0",
                                    "node-1 eth0"]
    assert rows[1][1] == "4096" and rows[4][1] == "4096"
    assert rows[2][2].startswith("frame 1: received by pod shop/backend-5f8c2")
    assert "calico-trace: allowed" in rows[2][2]
    assert "calico-trace: dropped [default-deny] on node-2" in rows[4][2]


def test_a_service_flow_through_dnat_seen_at_the_client(tmp_path, capsys):
    from replay_traffic import SERVICE_CLUSTERIP, service_capture
    cap = service_capture(tmp_path / "svc.pcap")
    replay(capsys, "-f", str(SERVICE_CLUSTERIP), str(cap), "--out", str(tmp_path / "o"),
           "--engine", "reference")
    packets = pd.read_parquet(tmp_path / "o" / "packets.parquet")
    assert set(packets["verdict"]) == {"allowed"} and set(packets["flow"]) == {0}
    syn = packets.iloc[0]
    assert syn["nat"].startswith("node-1 DNAT 10.244.0.20:40000>10.96.0.50:80 -> ")
    assert syn["policy"] == "KubernetesNetworkPolicy demo/web-allow-client"
    # The SYN-ACK the client saw came from the cluster IP; the backend sent it from its own
    # address, and node-1's conntrack de-NATed it: replayed as sent, it is ESTABLISHED.
    synack = packets.iloc[1]
    assert (synack["src"], synack["ct_state"]) == ("10.96.0.50", "ESTABLISHED")
    assert "de-NAT" in synack["nat"] and "before de-NAT" in synack["detail"]
    assert set(packets.iloc[2:]["ct_state"]) == {"ESTABLISHED"}
