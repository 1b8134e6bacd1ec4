"""A lab as its ``lab.yaml`` declares it, read and validated in one place.

A lab directory holds a scenario (the cluster's manifests) and ``lab.yaml``::

    title: Default deny, and which policy selected the pod
    level: beginner | intermediate | advanced
    teaches: [what the learner leaves knowing, ...]
    story: |                          the situation, in a paragraph or two
    steps:                            what to run, in order
    - say: Trace the packet.
      run: calico-trace packet -f LAB --from a/b --to a/c --port 80    (LAB: this directory)
    questions:
    - ask: Which policy selected the pod?
      answer: default-deny            the answer shown
      accept: [default-deny]          a reply is right when it contains one of these
      explain: why that is the answer
    checks:                           what ``calico-trace lab check`` verifies
    - name: other cannot reach backend
      packet: {from: a/b, to: a/c, protocol: tcp, port: 80}   (+ state, reply, size,
                                                               tcp_flags, endpoint)
      expect: {verdict: dropped, reason: default-deny, decided_by: [...], selected_by: {...},
               staged: [...], path: [...], path_excludes: [...], why: ...,
               hint: ..., delivered_to: ...}
      fix:                            a "fix it" step: the manifest change, then what holds
        say: Allow it.
        apply: |                      documents applied as kubectl apply would (same kind,
          <YAML>                      namespace and name: replaced; otherwise added)
        delete: [Kind/namespace/name]
        expect: {verdict: allowed}

Every problem is one line naming the file, the object (``checks[2].expect.verdict``) and what
is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tracer.dataplane.reasons import DropReason
from tracer.errors import InputError

LAB_FILE = "lab.yaml"
LEVELS = ("beginner", "intermediate", "advanced")
LAB_PLACEHOLDER = "LAB"               # in a step's command: this lab's directory
PACKET_KEYS = {"from": str, "to": str, "protocol": str, "port": int, "state": str,
               "reply": bool, "size": int, "tcp_flags": str, "endpoint": (str, int),
               "icmp_type": int, "icmp_code": int}
EXPECT_KEYS = {"verdict": str, "reason": str, "delivered_to": str, "decided_by": list,
               "selected_by": dict, "staged": list, "path": list, "path_excludes": list,
               "why": str, "hint": str}


@dataclass(frozen=True)
class Step:
    say: str
    run: str | None = None


@dataclass(frozen=True)
class Question:
    ask: str
    answer: str
    accept: tuple[str, ...]
    explain: str = ""

    def is_right(self, reply: str) -> bool:
        """A reply is right when it contains one of the accepted answers (case, spacing and
        quoting aside)."""
        said = _normal(reply)
        return bool(said) and any(_normal(word) in said for word in self.accept)


@dataclass(frozen=True)
class Expect:
    verdict: str | None = None
    reason: str | None = None
    delivered_to: str | None = None
    decided_by: tuple[str, ...] = ()
    selected_by: dict[str, tuple[str, ...]] = field(default_factory=dict, hash=False)
    staged: tuple[str, ...] = ()
    path: tuple[str, ...] = ()
    path_excludes: tuple[str, ...] = ()
    why: str | None = None
    hint: str | None = None


@dataclass(frozen=True)
class Fix:
    say: str
    apply: tuple[dict, ...]
    delete: tuple[str, ...]
    expect: Expect


@dataclass(frozen=True)
class Check:
    name: str
    packet: dict[str, Any] = field(hash=False)
    expect: Expect
    fix: Fix | None = None


@dataclass(frozen=True)
class Lab:
    number: int
    slug: str
    path: Path
    title: str
    level: str
    teaches: tuple[str, ...]
    story: str
    steps: tuple[Step, ...]
    questions: tuple[Question, ...]
    checks: tuple[Check, ...]

    @property
    def file(self) -> str:
        return str(self.path / LAB_FILE)


def load_lab(path: Path) -> Lab:
    """Read and validate ``path/lab.yaml``; the directory is named ``NN-slug``."""
    file = str(path / LAB_FILE)
    number, _, slug = path.name.partition("-")
    if not number.isdigit() or not slug:
        raise InputError("a lab directory is named NN-slug (e.g. 01-default-deny)",
                         file=str(path))
    try:
        doc = yaml.safe_load((path / LAB_FILE).read_text())
    except OSError as err:
        raise InputError(f"cannot read: {err.strerror}", file=file) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else None
        raise InputError(f"not valid YAML: {getattr(err, 'problem', err)}", file=file,
                         obj=where) from None
    read = _Reader(file)
    doc = read.mapping(doc, "lab.yaml", required={"title", "level", "teaches", "story",
                                                  "steps", "questions", "checks"})
    level = read.text(doc["level"], "level")
    if level not in LEVELS:
        raise InputError(f"level {level!r} is not one of {', '.join(LEVELS)}", file=file,
                         obj="level")
    return Lab(
        number=int(number), slug=slug, path=path,
        title=read.text(doc["title"], "title"), level=level,
        teaches=tuple(read.text(t, f"teaches[{i}]")
                      for i, t in enumerate(read.items(doc["teaches"], "teaches"))),
        story=read.text(doc["story"], "story").strip(),
        steps=tuple(read.step(s, f"steps[{i}]")
                    for i, s in enumerate(read.items(doc["steps"], "steps"))),
        questions=tuple(read.question(q, f"questions[{i}]")
                        for i, q in enumerate(read.items(doc["questions"], "questions"))),
        checks=tuple(read.check(c, f"checks[{i}]")
                     for i, c in enumerate(read.items(doc["checks"], "checks"))))


def find_labs(root: Path) -> list[Path]:
    """The lab directories under ``root`` (those holding a lab.yaml), in number order."""
    if not root.is_dir():
        raise InputError("no such labs directory", file=str(root))
    return sorted(p for p in root.iterdir() if (p / LAB_FILE).is_file())


def _normal(text: str) -> str:
    return " ".join(str(text).lower().replace("'", "").replace('"', "").split())


class _Reader:
    """Type-checks one lab.yaml, naming the object at fault."""

    def __init__(self, file: str):
        self.file = file

    def fail(self, obj: str, problem: str):
        raise InputError(problem, file=self.file, obj=obj)

    def mapping(self, value, obj: str, *, required=(), allowed=None) -> dict:
        if not isinstance(value, dict):
            self.fail(obj, f"expected a mapping, got {type(value).__name__}")
        missing = sorted(set(required) - set(value))
        if missing:
            self.fail(obj, f"missing {', '.join(missing)}")
        unknown = sorted(set(value) - set(allowed)) if allowed is not None else []
        if unknown:
            self.fail(f"{obj}.{unknown[0]}", f"unknown key (known: {', '.join(sorted(allowed))})")
        return value

    def items(self, value, obj: str) -> list:
        if not isinstance(value, list) or not value:
            self.fail(obj, "expected a non-empty list")
        return value

    def text(self, value, obj: str) -> str:
        if not isinstance(value, str) or not value.strip():
            self.fail(obj, "expected non-empty text")
        return value

    def step(self, value, obj: str) -> Step:
        doc = self.mapping(value, obj, required={"say"}, allowed={"say", "run"})
        run = doc.get("run")
        if run is not None:
            run = self.text(run, f"{obj}.run")
            words = run.split()
            if words[0] != "calico-trace" or len(words) < 2:
                self.fail(f"{obj}.run", "a step runs a calico-trace command")
            if words[1] == "lab":
                self.fail(f"{obj}.run", "a step cannot run a lab command (lab check runs "
                          "every step)")
        return Step(self.text(doc["say"], f"{obj}.say").strip(), run)

    def question(self, value, obj: str) -> Question:
        doc = self.mapping(value, obj, required={"ask", "answer"},
                           allowed={"ask", "answer", "accept", "explain"})
        answer = str(doc["answer"])
        accept = doc.get("accept", [answer])
        if not isinstance(accept, list) or not accept:
            self.fail(f"{obj}.accept", "expected a non-empty list of accepted answers")
        return Question(self.text(doc["ask"], f"{obj}.ask").strip(), answer,
                        tuple(str(a) for a in accept), str(doc.get("explain", "")).strip())

    def check(self, value, obj: str) -> Check:
        doc = self.mapping(value, obj, required={"name", "packet", "expect"},
                           allowed={"name", "packet", "expect", "fix"})
        packet = self.mapping(doc["packet"], f"{obj}.packet", required={"from", "to"},
                              allowed=set(PACKET_KEYS))
        for key, kind in PACKET_KEYS.items():
            if key in packet and not isinstance(packet[key], kind):
                self.fail(f"{obj}.packet.{key}", f"expected {_kind_name(kind)}")
        fix = None
        if "fix" in doc:
            fix = self.fix(doc["fix"], f"{obj}.fix")
        return Check(self.text(doc["name"], f"{obj}.name"), dict(packet),
                     self.expect(doc["expect"], f"{obj}.expect"), fix)

    def expect(self, value, obj: str) -> Expect:
        doc = self.mapping(value, obj, allowed=set(EXPECT_KEYS))
        if not doc:
            self.fail(obj, "expects nothing")
        for key, kind in EXPECT_KEYS.items():
            if key in doc and not isinstance(doc[key], kind):
                self.fail(f"{obj}.{key}", f"expected {_kind_name(kind)}")
        verdict = doc.get("verdict")
        if verdict is not None and verdict not in ("allowed", "dropped"):
            self.fail(f"{obj}.verdict", f"{verdict!r} is not allowed or dropped")
        reason = doc.get("reason")
        if reason is not None and reason not in {r.value for r in DropReason}:
            self.fail(f"{obj}.reason", f"{reason!r} is not a drop reason "
                      f"({', '.join(r.value for r in DropReason)})")
        selected = {}
        for key, names in doc.get("selected_by", {}).items():
            if not isinstance(names, list):
                self.fail(f"{obj}.selected_by.{key}", "expected a list of policy names")
            selected[str(key)] = tuple(str(n) for n in names)
        return Expect(verdict=verdict, reason=reason, delivered_to=doc.get("delivered_to"),
                      decided_by=tuple(map(str, doc.get("decided_by", ()))),
                      selected_by=selected, staged=tuple(map(str, doc.get("staged", ()))),
                      path=tuple(map(str, doc.get("path", ()))),
                      path_excludes=tuple(map(str, doc.get("path_excludes", ()))), why=doc.get("why"),
                      hint=doc.get("hint"))

    def fix(self, value, obj: str) -> Fix:
        doc = self.mapping(value, obj, required={"say", "expect"},
                           allowed={"say", "apply", "delete", "expect"})
        if "apply" not in doc and "delete" not in doc:
            self.fail(obj, "a fix applies or deletes manifests (apply:, delete:)")
        applied: list[dict] = []
        if "apply" in doc:
            try:
                applied = [d for d in yaml.safe_load_all(self.text(doc["apply"], f"{obj}.apply"))
                           if d is not None]
            except yaml.YAMLError as err:
                self.fail(f"{obj}.apply", f"not valid YAML: {getattr(err, 'problem', err)}")
            for i, manifest in enumerate(applied):
                self.mapping(manifest, f"{obj}.apply[{i}]",
                             required={"apiVersion", "kind", "metadata"})
        deleted = doc.get("delete", [])
        if not isinstance(deleted, list) or not all(isinstance(d, str) and d.count("/") in (1, 2)
                                                    for d in deleted):
            self.fail(f"{obj}.delete", "expected a list of Kind/name or Kind/namespace/name")
        return Fix(self.text(doc["say"], f"{obj}.say").strip(), tuple(applied), tuple(deleted),
                   self.expect(doc["expect"], f"{obj}.expect"))


def _kind_name(kind) -> str:
    names = {str: "text", int: "a number", bool: "true or false", list: "a list",
             dict: "a mapping"}
    return " or ".join(names[k] for k in kind) if isinstance(kind, tuple) else names[kind]
