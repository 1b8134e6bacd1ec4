"""Flow logs as replay input: each record becomes the packet that opens its flow.

A flow log (felix's ``flows.log``, Goldmane, Whisker; read by
:func:`tracer.capture.read_flow_logs`) says who talked to whom on which protocol and port, and
what Calico did, but holds no packets. Each record is replayed as its opening packet (a TCP
SYN, the UDP datagram, an ICMP echo request) in a run of its own (records are aggregates, so
one record's conntrack entry must not make the next one ESTABLISHED), and, when that is
allowed, the answer its receiver sends back.

The ends are found in the cluster in this order: the pod named by namespace and name; the
record's IP address; the first pod (by name) matching an aggregated name (``frontend-*``).
Goldmane and Whisker never carry addresses, so their records rely on names; a record whose
ends cannot be placed is a row with verdict *not modelled* that says which end.
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Address, ip_address

import pandas as pd

from tracer.dataplane.packet import make_packet
from tracer.dataplane.pipeline import Probe
from tracer.protocols import ICMP, ICMP_ECHO_REQUEST, PORTED, TCP, UDP, display_name
from tracer.replay.entry import Entries
from tracer.replay.runner import (ALLOWED, NOT_MODELLED, Replay, _decision_columns,
                                  _outcome_columns, _Run)
from tracer.replay.tables import FLOW_COLUMNS, packet_frame
from tracer.trace.assemble import Dataplane
from tracer.trace.session import Session, answer_to, delivered_packet
from tracer.trace.tracing import locate

# Felix's "pub" network: any public address; one from TEST-NET-3 (RFC 5737) stands for it.
PUBLIC_STAND_IN = IPv4Address("203.0.113.10")
SOURCE_PORT = 40000              # flow logs aggregate source ports away; the probe's default
# Extra per-flow columns: what the log itself says, and whether the replay agrees.
LOG_COLUMNS: dict[str, str] = {
    "log_file": "string", "log_line": "Int64", "logged_action": "string",
    "reporter": "string", "logged_policies": "string", "reply_verdict": "string",
    "agrees": "boolean",
}


def flow_log_frames(dataplane: Dataplane, logs: Sequence[pd.DataFrame]
                    ) -> tuple[Replay, pd.DataFrame, pd.DataFrame]:
    """The replay, per-packet and per-flow frames of replaying every record of ``logs``."""
    run = _Run(dataplane, Entries(dataplane, None), tcp_loose=True, capacity=1 << 16)
    flows: list[dict] = []
    for log in logs:
        for record in log.itertuples(index=False):
            flows.append(_replay_record(run, dataplane, record, len(flows)))
    packets = packet_frame(run.result)
    frame = pd.DataFrame(flows, columns=list(FLOW_COLUMNS) + list(LOG_COLUMNS))
    return run.result, packets, frame.astype({**FLOW_COLUMNS, **LOG_COLUMNS})


def _replay_record(run: _Run, dataplane: Dataplane, record, flow: int) -> dict:
    cluster = dataplane.cluster
    row = {"flow": flow, "protocol": display_name(int(record.protocol)),
           "first_seen": record.start_time, "last_seen": record.end_time,
           "log_file": record.file, "log_line": record.line,
           "logged_action": record.action, "reporter": record.reporter,
           "logged_policies": _policies(record.policies),
           "packets": _sum(record.packets_in, record.packets_out),
           "bytes": _sum(record.bytes_in, record.bytes_out), "allowed": 0, "dropped": 0}
    src, src_note = _place(cluster, record.source_namespace, record.source_name,
                           record.source_name_aggr, record.source_ip)
    dst, dst_note = _place(cluster, record.dest_namespace, record.dest_name,
                           record.dest_name_aggr, record.dest_ip)
    if src is None or dst is None:
        missing = src_note if src is None else dst_note
        row.update(verdict=NOT_MODELLED, reason="unplaced", why=missing)
        _packet_row(run, {"verdict": NOT_MODELLED, "reason": "unplaced", "detail": missing},
                    flow=flow)
        return row
    protocol = int(record.protocol)
    dport = None if pd.isna(record.dest_port) else int(record.dest_port)
    sport = None if pd.isna(record.source_port) else int(record.source_port)
    if protocol in PORTED and dport is None:
        row.update(verdict=NOT_MODELLED, reason="unplaced", why="no destination port")
        return row
    packet = make_packet(src, dst, protocol, dport=dport, sport=sport or SOURCE_PORT,
                         icmp_type=ICMP_ECHO_REQUEST)
    run.session = Session(dataplane, tcp_loose=True)      # a run of its own, see above
    probe = locate(cluster, packet)
    opening = _send(run, probe, flow, record)
    row.update(src=str(src), dst=str(dst), sport=packet.sport, dport=packet.dport,
               source=probe.source, destination=probe.destination)
    for name in ("verdict", "reason", "node", "policy", "tier", "deciding_chain",
                 "deciding_rule"):
        row[name] = opening.get(name)
    row["why"] = "; ".join(n for n in (src_note, dst_note) if n)
    counted = [opening]
    if opening["verdict"] == ALLOWED and (protocol in (TCP, UDP) or protocol == ICMP):
        answer = answer_to(delivered_packet(opening["_outcome"]))
        if answer is not None:
            reply = _send(run, locate(cluster, answer), flow, record)
            row["reply_verdict"] = reply["verdict"]
            counted.append(reply)
    row["allowed"] = sum(c["verdict"] == ALLOWED for c in counted)
    row["dropped"] = len(counted) - row["allowed"]
    row["agrees"] = (record.action == "allow") == (opening["verdict"] == ALLOWED) \
        if record.action in ("allow", "deny") else None
    return row


def _send(run: _Run, probe: Probe, flow: int, record) -> dict:
    outcome = run.dataplane.pipeline.run(probe, run.session.state, run.session.pins)
    values = _outcome_columns(probe, outcome)
    decision = run._decision(run._trace(probe, outcome))
    if decision is not None:
        values.update(_decision_columns(decision))
    _packet_row(run, values, probe=probe, time=record.start_time, flow=flow)
    values["_outcome"] = outcome
    return values


def _packet_row(run: _Run, values: dict, *, probe: Probe | None = None, time=None,
                flow: int | None = None) -> None:
    """One row of the per-packet table for a synthesised packet."""
    row = dict(values)
    row.update(capture=None, frame=None, flow=flow)
    if probe is not None:
        packet = probe.packet
        row.update(src=str(packet.src), dst=str(packet.dst), sport=packet.sport,
                   dport=packet.dport, length=packet.length, protocol=packet.protocol_name,
                   time_ns=None if time is None or pd.isna(time) else int(time.value))
    for name, column in run.result.columns.items():
        column.append(row.get(name))
    run.result.origin.append((-1, -1))
    run.result.keys.append(None)


def _place(cluster, namespace, name, aggregated, ip) -> tuple[IPv4Address | None, str]:
    """The address of a flow log's end, and a note when it was guessed."""
    namespace = None if pd.isna(namespace) else str(namespace)
    name = None if pd.isna(name) else str(name)
    if namespace and name and name != "-":
        ep = cluster.endpoints.get(f"{namespace}/{name}")
        if ep is not None:
            return ep.pod.ip, ""
    if ip is not None and not pd.isna(ip):
        address = ip_address(str(ip))
        if isinstance(address, IPv4Address):
            return address, ""
    prefix = None if pd.isna(aggregated) else str(aggregated)
    if prefix is None and name and name.endswith("*"):
        prefix = name
    if namespace and prefix and prefix.endswith("*"):
        stem = prefix.rstrip("*")
        matches = sorted(key for key, ep in cluster.endpoints.items()
                         if ep.pod.namespace == namespace and ep.pod.name.startswith(stem))
        if matches:
            return cluster.endpoints[matches[0]].pod.ip, \
                f"{namespace}/{prefix} taken as {matches[0]}"
    if prefix == "pub" or name == "pub":
        return PUBLIC_STAND_IN, f"{PUBLIC_STAND_IN} stands for the public network (pub)"
    names = [n for n in (name, prefix) if n and n != "-"]
    who = "/".join(filter(None, (namespace if namespace != "-" else None,
                                 names[0] if names else None))) or "an end"
    return None, f"no pod or address for {who} in the cluster"


def _policies(policies) -> str:
    """``tier|namespace/name|action|rule`` per policy hit, as felix writes them."""
    if not isinstance(policies, list):
        return ""
    hits = []
    for hit in policies:
        name = "/".join(filter(None, (hit.get("namespace"), hit.get("name"))))
        hits.append(f"{hit.get('tier')}|{name}|{hit.get('action')}|{hit.get('rule_index')}")
    return "; ".join(hits)


def _sum(a, b) -> int | None:
    values = [int(v) for v in (a, b) if v is not None and not pd.isna(v)]
    return sum(values) if values else None

