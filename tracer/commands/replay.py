"""``calico-trace replay``: captured packets (or flow logs) through the cluster's dataplane."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from tracer.commands.options import (cache_options, load_for_command, say_notes, use_engine)
from tracer.commands.stages import StageClock
from tracer.errors import InputError, quote


@click.command()
@click.option("-f", "--filename", "paths", multiple=True, required=True, type=click.Path(),
              help="Manifest file or directory (repeatable), as with kubectl apply -f.")
@click.argument("captures", nargs=-1, type=click.Path())
@click.option("--at", "at_text", metavar="NS/POD|NODE/IFACE",
              help="Where the capture was taken (default: each packet enters where its "
                   "source address is).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write packets.{parquet,csv}, flows.{parquet,csv} and replay.pcapng "
                   "(verdict and deciding rule as each packet's comment) here.")
@click.option("--hops", is_flag=True,
              help="With --out: also write hops.pcapng, every packet as it is at each point "
                   "of its path (sent, on each underlay with its tunnel framing, received).")
@click.option("--engine", type=click.Choice(["auto", "compiled", "reference"]), default="auto",
              show_default=True, help="auto: the faster for replay, measured (the reference "
              "today); both give the same tables.")
@click.option("--decision-cache/--no-decision-cache", "decision_cache", default=True,
              show_default=True,
              help="Take a packet's verdict from an earlier packet that the rules, routing and "
                   "conntrack treat alike (conntrack still sees every packet; same tables). Off "
                   "with --hops.")
@click.option("--keylog", type=click.Path(), help="WireGuard keylog to decrypt tunnel traffic.")
@click.option("--tcp-loose/--no-tcp-loose", default=True, show_default=True,
              help="nf_conntrack_tcp_loose: pick up TCP connections from a mid-stream packet "
                   "(kernel default on); off, a stray ACK is INVALID.")
@click.option("--what-if", "what_if", multiple=True, type=click.Path(),
              help="Manifests to add to (or replace in, same kind/namespace/name) -f; replay "
                   "again and list the flows whose verdict changes. Exit status 1 when a flow "
                   "that was allowed is denied.")
@click.option("--compare-with", "compare_with", multiple=True, type=click.Path(),
              help="A whole second set of manifests (a proposed cluster) to replay the same "
                   "traffic against, as --what-if does with an overlay.")
@click.option("--flow-logs", "flow_logs", multiple=True, type=click.Path(),
              help="Calico flow logs (felix flows.log, Goldmane, Whisker): each record is "
                   "replayed as its opening packet.")
@click.option("--workers", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Processes (dask): captures split by flow, results merged.")
@click.option("--dask", "scheduler", metavar="ADDRESS",
              help="Run the --workers parts on this Dask scheduler (tcp://host:8786) instead "
                   "of local processes.")
@click.option("--top", type=click.IntRange(1, 1000), default=10, show_default=True,
              help="Denied flows listed in the summary.")
@click.option("--calico-version", help="Calico release whose felix rules to render.")
@cache_options
def replay(paths, captures, at_text, out_dir, hops, engine, decision_cache, keylog, tcp_loose,
           what_if,
           compare_with, flow_logs, workers, scheduler, top, calico_version, cache_dir, no_cache,
           verbose) -> None:
    """Replay CAPTURE files (pcap, pcapng) through every node's Calico dataplane: a verdict,
    reason and deciding rule for every packet, in capture order, with conntrack."""
    from rich.console import Console

    from tracer.replay import tables
    from tracer.replay.summary import summary

    if not captures and not flow_logs:
        raise InputError("give capture files (pcap/pcapng) or --flow-logs FILE", obj="replay")
    if captures and flow_logs:
        raise InputError("replay either captures or --flow-logs, not both", obj="--flow-logs")
    if flow_logs and at_text:
        raise InputError("--at is for captures; flow logs say where each flow came from",
                         obj="--at")
    if hops and (out_dir is None or flow_logs or workers > 1):
        raise InputError("--hops writes hops.pcapng under --out, for captures replayed in one "
                         "process", obj="--hops")
    if what_if and compare_with:
        raise InputError("--what-if overlays -f, --compare-with replaces it: use one",
                         obj="--compare-with")
    if scheduler and workers == 1:
        raise InputError("--dask needs --workers N (the number of parts to split into)",
                         obj="--dask")
    _check_out(out_dir)
    clock = StageClock(verbose=verbose)
    err = Console(stderr=True)
    prepared = load_for_command(paths, calico_version=calico_version, cache_dir=cache_dir,
                                no_cache=no_cache, clock=clock)
    for warning in prepared.cluster.warnings:
        click.echo(f"warning: {warning}", err=True)
    with clock.stage("read captures"):
        inputs = _read_flow_logs(flow_logs) if flow_logs else _read_captures(captures, keylog)
    engine = _pick_engine(engine)
    run = _Runner(prepared, calico_version, engine, at_text, tcp_loose, workers, err, keylog,
                  scheduler, hops, decision_cache)
    with clock.stage("replay"):
        result, packets, flows, notes = run(inputs, flow_logs=bool(flow_logs))
    if not flow_logs and (verbose or (decision_cache and result.fast_path.startswith("off"))):
        click.echo(f"replay: decision cache {result.fast_path}", err=True)
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    say_notes(notes)
    status = 0
    changes = None
    if what_if or compare_with:
        from tracer.replay.whatif import diff_flows, overlay_manifests
        with clock.stage("what-if"):
            other = (overlay_manifests(paths, what_if, calico_version=calico_version)
                     if what_if else
                     load_for_command(compare_with, calico_version=calico_version,
                                      cache_dir=cache_dir, no_cache=no_cache, clock=clock))
            run_b = _Runner(other, calico_version, engine, at_text, tcp_loose, workers, err,
                            keylog, scheduler, fast=decision_cache)
            _, packets_b, flows_b, _ = run_b(inputs, flow_logs=bool(flow_logs))
            changes = diff_flows(flows, flows_b)
    if out_dir is not None:
        with clock.stage("write --out"):
            out_dir.mkdir(exist_ok=True)
            written = tables.save(packets, out_dir, "packets") + tables.save(flows, out_dir,
                                                                             "flows")
            if not flow_logs:
                pcap = out_dir / "replay.pcapng"
                tables.write_annotated_pcapng(pcap, result, packets)
                written.append(pcap)
            if hops:
                path = out_dir / "hops.pcapng"
                tables.write_hops(path, result)
                written.append(path)
            if changes is not None:
                written += tables.save(packets_b, out_dir, "what-if-packets")
                written += tables.save(flows_b, out_dir, "what-if-flows")
                written += tables.save(changes, out_dir, "what-if-changes")
        click.echo("wrote " + ", ".join(str(p) for p in written), err=True)
    terminal = Console()
    out = Console(file=sys.stdout, width=terminal.width if terminal.is_terminal else 160)
    out.print(summary(packets, flows, top=top))
    if changes is not None:
        from tracer.replay.whatif import breaks, changes_table
        out.print(changes_table(changes))
        if breaks(changes):
            status = 1
    sys.stdout.flush()
    clock.report()
    if status:
        sys.exit(status)


def _check_out(out_dir: Path | None) -> None:
    if out_dir is None:
        return
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError("is not a directory", file=str(out_dir), obj="--out")
    if not out_dir.parent.is_dir():
        raise InputError(f"folder {quote(str(out_dir.parent))} does not exist",
                         file=str(out_dir), obj="--out")


def _read_captures(paths, keylog):
    from tracer.capture import read_capture
    for path in paths:
        if not Path(path).is_file():
            raise InputError("no such capture file", file=path)
    captures = [read_capture(path, keylog=keylog) for path in paths]
    for capture in captures:
        # Cut before its first packet: nothing to replay, and most likely the wrong file.
        if capture.frames == 0 and capture.warnings:
            raise InputError(capture.warnings[0], file=capture.path)
    return captures


def _read_flow_logs(paths):
    from tracer.capture import read_flow_logs
    for path in paths:
        if not Path(path).is_file():
            raise InputError("no such flow log file", file=path, obj="--flow-logs")
    return [read_flow_logs(path) for path in paths]


def _pick_engine(engine: str) -> str:
    """``auto`` is the reference: replay sends one packet per table call and records the
    deciding rule, where the compiled engine's per-call overhead costs more than it saves
    (benchmarks/RESULTS.md, "replay": 0.6-0.7x the reference at 300-1,000 policies)."""
    return "reference" if engine == "auto" else engine


class _Runner:
    """One replay of the inputs against one set of manifests (the what-if runs it twice)."""

    def __init__(self, prepared, calico_version, engine, at_text, tcp_loose, workers, err,
                 keylog=None, scheduler=None, hops=False, fast=True):
        self.prepared, self.calico_version, self.engine = prepared, calico_version, engine
        self.keylog, self.scheduler, self.hops, self.fast = keylog, scheduler, hops, fast
        self.at_text, self.tcp_loose, self.workers, self.err = at_text, tcp_loose, workers, err

    def __call__(self, inputs, *, flow_logs: bool):
        from tracer.policy.felix.versions import resolve_version
        from tracer.replay import tables
        from tracer.replay.entry import parse_at
        from tracer.trace.assemble import build_dataplane

        cluster = self.prepared.cluster
        version = resolve_version(cluster, self.calico_version)
        dataplane, notes = use_engine(
            build_dataplane(cluster, version=version, prepared=self.prepared), self.engine)
        if flow_logs:
            from tracer.replay.flowlogs import flow_log_frames
            return (*flow_log_frames(dataplane, inputs), notes)
        at = parse_at(dataplane, self.at_text)
        if self.workers > 1:
            from tracer.replay.scale import replay_parallel
            result = replay_parallel(self.prepared, version, self.engine, inputs,
                                     keylog=self.keylog, at=self.at_text,
                                     tcp_loose=self.tcp_loose, workers=self.workers,
                                     scheduler=self.scheduler, fast=self.fast)
        else:
            result = _with_progress(dataplane, inputs, at, self.tcp_loose, self.err, self.hops,
                                    self.fast)
        packets = tables.packet_frame(result)
        return result, packets, tables.flow_frame(packets, result), notes


def _with_progress(dataplane, inputs, at, tcp_loose, err, hops, fast=True):
    """Replay with a progress bar on stderr when the capture is long and stderr a terminal."""
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeRemainingColumn)

    from tracer.replay.runner import replay_captures

    total = sum(len(c) for c in inputs)
    if total < 5000:
        return replay_captures(dataplane, inputs, at=at, tcp_loose=tcp_loose, hops=hops,
                               fast=fast)
    with Progress(TextColumn("replay"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=err, transient=True) as bar:
        task = bar.add_task("replay", total=total)
        return replay_captures(dataplane, inputs, at=at, tcp_loose=tcp_loose, hops=hops,
                               fast=fast, progress=lambda n: bar.advance(task, n))
