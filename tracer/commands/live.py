"""``calico-trace up | exec | flows | down``: the userspace dataplane on TUN devices, live."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import click

from tracer.commands.options import cache_options, manifest_option
from tracer.errors import InputError

READY_TIMEOUT = 180.0            # --detach: how long to wait for the pods (numba may compile)
DOWN_TIMEOUT = 10.0
DETACHED_ENV = "CALICO_TRACE_DETACHED"


def _require_root() -> None:
    if os.geteuid() != 0:
        raise InputError("needs root (network namespaces and TUN devices)", obj="up")


@click.command()
@manifest_option
@cache_options
@click.option("--calico-version", help="Calico release whose felix rules to render.")
@click.option("--engine", type=click.Choice(["compiled", "reference"]), default="reference",
              show_default=True, help="reference: the plain-Python interpreter, about twice "
              "as fast as compiled for one packet at a time, which is how the live loop "
              "sends them; compiled: the numba engine.")
@click.option("--offload/--no-offload", default=True, show_default=True,
              help="Let pods hand over TCP segments of up to 64 KiB and leave checksums to "
              "the receiver (IFF_VNET_HDR, TSO, checksum offload), as a veth does.")
@click.option("--detach", is_flag=True, help="Run in the background; return once the pods are "
              "ready (output goes to /run/calico-trace/up.log).")
def up(paths, cache_dir, no_cache, verbose, calico_version, engine, offload, detach) -> None:
    """Create one namespace per pod, with a TUN eth0, and forward every packet through the
    cluster's Calico dataplane; drops are printed as they happen."""
    # Imported here: exec, flows and down start fast without the dataplane's modules.
    from tracer.commands.options import load_for_command, use_engine
    from tracer.commands.stages import StageClock
    from tracer.live import state
    from tracer.live.run import serve
    from tracer.policy.felix.versions import resolve_version
    from tracer.trace.assemble import build_dataplane

    _require_root()
    for path in paths:
        if not os.path.exists(path):
            raise InputError("no such file or directory", file=path, obj="-f")
    if detach:
        args = ["up", *(a for path in paths for a in ("-f", path)), "--engine", engine]
        args += ["--calico-version", calico_version] if calico_version else []
        args += ["--no-cache"] if no_cache else []
        args += [] if offload else ["--no-offload"]
        args += ["--cache", str(cache_dir)] if cache_dir else []
        _detach(args)
        return

    def load():
        clock = StageClock(verbose=verbose)
        prepared = load_for_command(paths, calico_version=calico_version,
                                    cache_dir=cache_dir, no_cache=no_cache, clock=clock)
        cluster = prepared.cluster
        version = resolve_version(cluster, calico_version)
        dataplane, _notes = use_engine(build_dataplane(cluster, version=version,
                                                       prepared=prepared), engine)
        return dataplane

    def say(line: str) -> None:
        click.echo(line)
        sys.stdout.flush()

    log = state.path(state.LOG_FILE) if os.environ.get(DETACHED_ENV) else None
    serve(load, paths, say=say, log=log, offload=offload)


def _detach(args: list[str]) -> None:
    """Start ``up`` again without --detach in its own session, wait until it is ready."""
    from tracer.live import state

    existing = state.read()
    if existing is not None and existing.alive():
        raise InputError(f"calico-trace up is already running (pid {existing.pid}); run "
                         "`calico-trace down` first", file=state.path())
    os.makedirs(state.STATE_DIR, exist_ok=True)
    log_path = state.path(state.LOG_FILE)
    with open(log_path, "w") as log:
        child = subprocess.Popen(
            [sys.executable, "-c", "from tracer.cli import main; main()", *args],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, env={**os.environ, DETACHED_ENV: "1"})
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        found = state.read()
        if found is not None and found.pid == child.pid:
            pods = sum("/" in key for key in found.pods)       # "ns/name": pods, not hosts
            click.echo(f"up: pid {child.pid} ready, {pods} pods and "
                       f"{len(found.pods) - pods} hosts (log: {log_path})")
            return
        if child.poll() is not None:
            tail = open(log_path).read().strip().splitlines()[-3:]
            raise InputError("up exited before its pods were ready: " + " | ".join(tail),
                             file=log_path)
        time.sleep(0.1)
    child.kill()
    raise InputError(f"the pods were not ready within {READY_TIMEOUT:.0f} s", file=log_path)


@click.command("exec", context_settings={"ignore_unknown_options": True})
@click.argument("pod")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_(pod, command) -> None:
    """Run COMMAND inside POD's network namespace (NAMESPACE/POD), as kubectl exec does."""
    from tracer.live import state
    from tracer.live.enter import enter_netns

    _require_root()
    running = state.running()
    netns = running.namespace_of(pod)
    program = shutil.which(command[0])
    if program is None:
        raise InputError("command not found", obj=command[0])
    sys.stdout.flush()
    enter_netns(netns)
    os.execv(program, list(command))


@click.command()
@click.option("--output", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
@click.option("--follow", is_flag=True, help="Keep listing flows as they change (a line per "
              "changed flow, JSON lines with --output json) until Ctrl-C or `up` ends.")
@click.option("--trace", "flow_id", type=click.IntRange(1), metavar="ID",
              help="Print flow #ID's hop-by-hop traces instead: its first packet's and its "
                   "last drop's, as `packet` prints them.")
def flows(output, follow, flow_id) -> None:
    """List the flows the running `up` has seen, with their verdicts and deciding policy."""
    from tracer.live import state
    from tracer.live.flows import format_flows

    running = state.running()
    if flow_id is not None:
        _print_flow_traces(running, flow_id, output)
        return
    rows = _fresh_flows(running)
    if not follow:
        click.echo(json.dumps(rows, indent=1) if output == "json" else format_flows(rows),
                   nl=output == "json")
        return
    seen: dict[tuple, int] = {}
    while True:
        for row in sorted(rows, key=lambda r: r["last_seen"]):
            key = (row["protocol"], row["client"], row["server"])
            if seen.get(key) != row["packets"]:
                seen[key] = row["packets"]
                click.echo(json.dumps(row) if output == "json" else format_flows([row]),
                           nl=output == "json")
        sys.stdout.flush()
        time.sleep(1.0)
        if not running.alive():
            return
        rows = _fresh_flows(running)


def _print_flow_traces(running, flow_id: int, output: str) -> None:
    """Ask `up` for one flow's traces (a request file and SIGUSR1) and print them."""
    from tracer.live import state

    request = state.path(state.TRACE_REQUEST.format(pid=os.getpid()))
    answer = state.path(state.TRACE_ANSWER.format(pid=os.getpid()))
    with open(request + ".tmp", "w") as handle:
        json.dump({"id": flow_id}, handle)
    os.replace(request + ".tmp", request)
    try:
        os.kill(running.pid, signal.SIGUSR1)
        deadline = time.monotonic() + 10.0
        while not os.path.exists(answer):
            if time.monotonic() > deadline or not running.alive():
                raise InputError("the running up did not answer", file=request)
            time.sleep(0.05)
        with open(answer) as handle:
            found = json.load(handle)
    finally:
        for path in (request, answer):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
    if "error" in found:
        raise InputError(found["error"], obj="--trace")
    if output == "json":
        click.echo(json.dumps({k: v["trace"] if isinstance(v, dict) and "trace" in v else v
                               for k, v in found.items()}, indent=1))
        return
    from tracer.live.flows import format_flows
    click.echo(format_flows([found["flow"]]), nl=False)
    first, last_drop = found["first"]["text"], found.get("last_drop", {}).get("text")
    if last_drop == first:
        click.echo(f"\nfirst packet, also the last drop:\n{first}", nl=False)
        return
    click.echo(f"\nfirst packet:\n{first}", nl=False)
    if last_drop is not None:
        click.echo(f"\nlast drop:\n{last_drop}", nl=False)


def _fresh_flows(running) -> list[dict]:
    """Ask `up` for a fresh dump of its flow table (SIGUSR1) and read it."""
    before = _mtime(running.flows)
    try:
        os.kill(running.pid, signal.SIGUSR1)
    except ProcessLookupError:
        pass                                      # it just ended: its last dump stands
    deadline = time.monotonic() + 2.0
    while _mtime(running.flows) == before and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        with open(running.flows) as handle:
            return json.load(handle)
    except (OSError, json.JSONDecodeError) as err:
        raise InputError(f"cannot read the flow table: {err}", file=running.flows) from None


def _mtime(path: str) -> float | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


@click.command()
def down() -> None:
    """Stop the running `up` and remove every namespace it made."""
    from tracer.kernel.cleanup import reap_orphans, remove_namespace
    from tracer.live import state

    _require_root()
    found = state.read()
    if found is None:
        reaped = reap_orphans()
        click.echo("down: nothing running" + (f"; removed {len(reaped)} orphaned namespaces"
                                              if reaped else ""))
        return
    was_running = found.alive()
    if was_running:
        os.kill(found.pid, signal.SIGTERM)
        deadline = time.monotonic() + DOWN_TIMEOUT
        while found.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        if found.alive():
            os.kill(found.pid, signal.SIGKILL)
    for pod in found.pods.values():               # whatever is left (SIGKILL, a crash)
        remove_namespace(pod["netns"])
    state.remove(found.pid)
    reap_orphans()
    what = f"stopped pid {found.pid}" if was_running else f"pid {found.pid} had already ended"
    click.echo(f"down: {what}; removed {len(found.pods)} pod namespaces")
