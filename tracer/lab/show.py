"""A lab as text for the terminal: everything a newcomer needs to follow it from ``lab show``."""

from __future__ import annotations

import os
import shlex
import textwrap
from pathlib import Path

from tracer.lab.spec import LAB_PLACEHOLDER, Lab

WIDTH = 92


def shown_path(path: Path) -> str:
    """The lab directory as the learner types it: relative to where they are when shorter."""
    try:
        relative = os.path.relpath(path)
    except ValueError:
        return str(path)
    return relative if len(relative) < len(str(path)) else str(path)


def command_argv(lab: Lab, run: str) -> list[str]:
    """A step's command as arguments for calico-trace (the program name dropped), with
    ``LAB`` replaced by the lab's directory."""
    return [str(lab.path) if word == LAB_PLACEHOLDER else word for word in shlex.split(run)[1:]]


def command_text(lab: Lab, run: str) -> str:
    return " ".join(shlex.quote(shown_path(lab.path)) if word == LAB_PLACEHOLDER
                    else shlex.quote(word) for word in shlex.split(run))


def lab_line(lab: Lab) -> str:
    return f"{lab.number:2d}  {lab.level:<12} {lab.title}"


def _wrap(text: str, first: str, rest: str | None = None) -> str:
    return textwrap.fill(" ".join(text.split()), WIDTH, initial_indent=first,
                         subsequent_indent=rest if rest is not None else " " * len(first))


def render_lab_text(lab: Lab, *, answers: bool = True) -> str:
    out = [f"Lab {lab.number:02d}: {lab.title}", f"Level: {lab.level}", "", "You will learn:"]
    out += [_wrap(item, "  - ") for item in lab.teaches]
    out += ["", "Story:"] + [_wrap(par, "  ") for par in lab.story.split("\n\n")]
    out += ["", "Steps:"]
    for i, step in enumerate(lab.steps, 1):
        out.append(_wrap(step.say, f"{i:>3}. "))
        if step.run:
            out.append(f"       $ {command_text(lab, step.run)}")
    out += ["", "Questions:"]
    out += [_wrap(q.ask, f"  Q{i}. ") for i, q in enumerate(lab.questions, 1)]
    if answers:
        out += ["", "Answers:"]
        for i, question in enumerate(lab.questions, 1):
            out.append(_wrap(question.answer, f"  A{i}. "))
            if question.explain:
                out.append(_wrap(question.explain, "       "))
    out += ["", f"Checks (calico-trace lab check {lab.number}):"]
    for check in lab.checks:
        out.append(_wrap(f"{check.name}: {check_packet_text(check.packet)} is "
                         f"{expect_text(check.expect)}", "  - ", "    "))
        if check.fix is not None:
            out.append(_wrap(f"fix it: {check.fix.say} Then it is "
                             f"{expect_text(check.fix.expect)}.", "    ", "    "))
    return "\n".join(out) + "\n"


def check_packet_text(packet: dict) -> str:
    what = f"{packet['from']} -> {packet['to']}"
    if "port" in packet:
        what += f" {packet.get('protocol', 'tcp').lower()}/{packet['port']}"
    elif "protocol" in packet:
        what += f" {packet['protocol'].lower()}"
    extras = [f"{key} {packet[key]}" for key in ("tcp_flags", "size", "state", "endpoint")
              if key in packet]
    if packet.get("reply"):
        extras.append("its reply")
    return what + (f" ({', '.join(extras)})" if extras else "")


def expect_text(expect) -> str:
    text = expect.verdict or "as described"
    return text + (f" [{expect.reason}]" if expect.reason else "")
