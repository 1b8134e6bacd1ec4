"""``calico-trace lab check``: trace each check's packet and compare with what the lab expects.

A check runs on the lab's scenario as shipped; a "fix it" check then runs again on the
scenario with the fix's manifest change applied, and must then meet the fix's expectations.
Nothing is compared by eye: verdict, drop reason, deciding rules, selecting policies, staged
verdicts and the packet's path are compared field by field.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from tracer.errors import InputError
from tracer.explain import explain
from tracer.kubeproxy.probe import is_service_ref
from tracer.lab.spec import Check, Expect, Fix, Lab
from tracer.model.loader import NOT_MANIFESTS, load_cluster, manifest_files
from tracer.policy.felix.versions import resolve_version
from tracer.render.trace_text import CHANGES, change_text, provenance_text, verdict_text
from tracer.trace.assemble import Dataplane, build_dataplane
from tracer.trace.forks import trace_forks
from tracer.trace.result import PacketTrace
from tracer.trace.tracing import TraceRequest, trace_packet


@dataclass(frozen=True)
class Outcome:
    """One check, once: as shipped (``fixed`` False) or after its fix."""

    lab: Lab
    check: Check
    fixed: bool
    trace: PacketTrace
    problems: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.problems

    def label(self) -> str:
        return f"lab {self.lab.number:02d} {self.check.name}" + (" (after the fix)"
                                                                 if self.fixed else "")


def build_lab_dataplane(path: Path) -> Dataplane:
    cluster = load_cluster([path])
    return build_dataplane(cluster, version=resolve_version(cluster, None))


def run_checks(lab: Lab) -> list[Outcome]:
    """Every check of ``lab``, and for those with a fix, the check after the fix."""
    shipped = build_lab_dataplane(lab.path)
    outcomes = []
    for check in lab.checks:
        trace = trace_check(shipped, check.packet, lab.file)
        outcomes.append(Outcome(lab, check, False, trace, compare(trace, check.expect)))
        if check.fix is not None:
            with fixed_scenario(lab.path, check.fix) as fixed_dir:
                trace = trace_check(build_lab_dataplane(fixed_dir), check.packet, lab.file)
            outcomes.append(Outcome(lab, check, True, trace, compare(trace, check.fix.expect)))
    return outcomes


def request_of(packet: dict) -> TraceRequest:
    return TraceRequest(source=packet["from"], destination=packet["to"],
                        protocol=packet.get("protocol", "tcp").lower(), port=packet.get("port"),
                        state=packet.get("state", "new"), size=packet.get("size"),
                        reply=packet.get("reply", False), tcp_flags=packet.get("tcp_flags"),
                        icmp_type=packet.get("icmp_type"), icmp_code=packet.get("icmp_code"))


def trace_check(dataplane: Dataplane, packet: dict, file: str) -> PacketTrace:
    """The explained trace of a check's packet; a Service check pins one backend."""
    request = request_of(packet)
    if not is_service_ref(request.destination):
        return explain(dataplane, trace_packet(dataplane, request))
    endpoint = packet.get("endpoint")
    forks = trace_forks(dataplane, request, None if endpoint is None else str(endpoint))
    if len(forks) != 1:
        raise InputError(f"{request.destination} has {len(forks)} backends: a check pins one "
                         "(endpoint: N or NAMESPACE/POD)", file=file,
                         obj=f"packet to {request.destination}")
    (fork,) = forks
    return explain(dataplane, fork.trace)


def compare(trace: PacketTrace, expect: Expect) -> tuple[str, ...]:
    """What differs between ``trace`` and ``expect``, one line each (empty: it holds)."""
    problems = []
    if expect.verdict and trace.verdict != expect.verdict:
        problems.append(f"verdict: expected {expect.verdict}, got {verdict_text(trace)}")
    if expect.reason and trace.reason != expect.reason:
        problems.append(f"reason: expected {expect.reason}, got {trace.reason or 'none'}")
    if expect.delivered_to and trace.delivered_to != expect.delivered_to:
        problems.append(f"delivered to: expected {expect.delivered_to}, "
                        f"got {trace.delivered_to or 'nowhere'}")
    decided = [provenance_text(d.provenance) if d.provenance else (d.rule_text or "")
               for d in trace.deciding]
    for name in expect.decided_by:
        if not any(name in text for text in decided):
            problems.append(f"decided by: expected {name!r}, got {decided or 'no rule'}")
    for key, names in expect.selected_by.items():
        got = trace.selected_by.get(key)
        if got is None or sorted(got) != sorted(names):
            problems.append(f"{key} selected by: expected {list(names)}, "
                            f"got {list(got) if got is not None else 'no such endpoint'}")
    for text in expect.staged:
        if not any(text in line for line in trace.staged):
            problems.append(f"staged: expected {text!r}, got {list(trace.staged)}")
    if expect.path:
        problems += _path_problems(trace, expect.path)
    for text in expect.path_excludes:
        if any(" ".join(text.split()) in line for line in path_lines(trace)):
            problems.append(f"path: expected no {text!r}, got {path_lines(trace)}")
    if expect.why and expect.why not in trace.why:
        problems.append(f"why: expected it to say {expect.why!r}")
    if expect.hint and expect.hint not in trace.hint:
        problems.append(f"fix hint: expected it to say {expect.hint!r}, got {trace.hint!r}")
    return tuple(problems)


def path_lines(trace: PacketTrace) -> list[str]:
    """What changed or ended the packet, node by node (the minimal trace's lines, runs of
    spaces as one so a lab can quote them loosely)."""
    return [" ".join(f"{stage.node}: {change_text(stage)}".split()) for hop in trace.hops
            for stage in hop.stages if isinstance(stage, CHANGES)]


def _path_problems(trace: PacketTrace, wanted: tuple[str, ...]) -> list[str]:
    lines = path_lines(trace)
    at = 0
    for text in wanted:
        text = " ".join(text.split())
        found = next((i for i in range(at, len(lines)) if text in lines[i]), None)
        if found is None:
            return [f"path: expected {text!r} (in this order) among {lines}"]
        at = found                      # the next text may be on the same line
    return []


class fixed_scenario:
    """A temporary copy of the lab's scenario with ``fix`` applied as ``kubectl apply`` would:
    an applied object with the same kind, namespace and name replaces the original, others
    are added; ``delete`` entries (``Kind/name`` or ``Kind/namespace/name``) are removed."""

    def __init__(self, path: Path, fix: Fix):
        self.path, self.fix = path, fix

    def __enter__(self) -> Path:
        self._tmp = tempfile.TemporaryDirectory(prefix="calico-trace-lab-")
        out = Path(self._tmp.name) / self.path.name
        out.mkdir()
        replaced = {_identity(doc) for doc in self.fix.apply}
        deleted = set(self.fix.delete)
        used: set[str] = set()
        for file in manifest_files([self.path]):
            if Path(file).name in NOT_MANIFESTS:
                continue
            docs = [d for d in yaml.safe_load_all(Path(file).read_text()) if d is not None]
            kept = []
            for doc in docs:
                gone = _deleted_by(doc, deleted)
                if gone:
                    used.add(gone)
                elif not (isinstance(doc, dict) and _identity(doc) in replaced):
                    kept.append(doc)
            (out / Path(file).name).write_text(yaml.safe_dump_all(kept, sort_keys=False))
        missing = deleted - used
        if missing:
            raise InputError(f"the fix deletes {sorted(missing)[0]}, which the scenario lacks",
                             file=str(self.path / "lab.yaml"), obj="fix.delete")
        (out / "zz-fix.yaml").write_text(yaml.safe_dump_all(list(self.fix.apply),
                                                            sort_keys=False))
        return out

    def __exit__(self, *exc) -> None:
        self._tmp.cleanup()


def _identity(doc: dict) -> tuple[str, str, str | None, str | None]:
    group = str(doc.get("apiVersion", "")).rpartition("/")[0]
    meta = doc.get("metadata") or {}
    return group, str(doc.get("kind")), meta.get("namespace"), meta.get("name")


def _deleted_by(doc, deleted: set[str]) -> str | None:
    if not isinstance(doc, dict):
        return None
    _, kind, namespace, name = _identity(doc)
    for spec in (f"{kind}/{name}", f"{kind}/{namespace}/{name}"):
        if spec in deleted:
            return spec
    return None
