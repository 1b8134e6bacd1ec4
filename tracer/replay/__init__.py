"""``calico-trace replay``: captured traffic (pcap, pcapng, Calico flow logs) through the
rebuilt dataplane, packet by packet, with conntrack driven by the capture's clock.

Public API::

    parse_at(dataplane, "ns/pod" | "node/iface") -> At            # tracer.replay.entry
    replay_captures(dataplane, captures, at=, tcp_loose=, progress=) -> Replay
                                                                     # tracer.replay.runner
    packet_frame(replay) -> DataFrame, flow_frame(packets, replay) -> DataFrame
    save(frame, dir, stem), write_annotated_pcapng(path, replay, packets)
                                                                     # tracer.replay.tables
    summary tables (rich)                                            # tracer.replay.summary
    what-if: overlay manifests, diff flow verdicts                   # tracer.replay.whatif

Layer: above ``tracer.explain`` and ``tracer.trace`` (it reads the capture readers, builds
probes, runs the pipeline and explains the deciding rules); only ``tracer.commands`` imports it.
"""
