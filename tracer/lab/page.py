"""``lab show N --output html``: the lab as a page - story, steps, questions (answers folded),
and each check's trace drawn as ``packet --output html`` draws it, before and after its fix."""

from __future__ import annotations

from html import escape

import yaml

from tracer.lab.checks import Outcome
from tracer.lab.show import check_packet_text, command_text, expect_text
from tracer.lab.spec import Lab
from tracer.model.loader import load_cluster
from tracer.render.html_page import page
from tracer.render.html_trace import sources_section, trace_section
from tracer.render.sources import policy_sources


def render_lab_html(lab: Lab, outcomes: list[Outcome]) -> str:
    sources = policy_sources(load_cluster([lab.path]),
                             [o.trace for o in outcomes if not o.fixed])
    out = [f"<h1>Lab {lab.number:02d}: {escape(lab.title)}</h1>",
           f"<div class=\"muted\">Level: {escape(lab.level)}</div>",
           "<h2>You will learn</h2><ul>"]
    out += [f"<li>{escape(item)}</li>" for item in lab.teaches]
    out += ["</ul>", "<h2>Story</h2>"]
    out += [f"<p>{escape(' '.join(par.split()))}</p>" for par in lab.story.split("\n\n")]
    out.append("<h2>Steps</h2><ol class=\"steps\">")
    for step in lab.steps:
        command = (f"<pre>$ {escape(command_text(lab, step.run))}</pre>" if step.run else "")
        out.append(f"<li>{escape(step.say)}{command}</li>")
    out.append("</ol><h2>Questions</h2><ol class=\"questions\">")
    for question in lab.questions:
        explain = f"<p>{escape(question.explain)}</p>" if question.explain else ""
        out.append(f"<li><p>{escape(question.ask)}</p><details class=\"answer\"><summary>"
                   f"Answer</summary><p><b>{escape(question.answer)}</b></p>{explain}"
                   f"</details></li>")
    out.append("</ol><h2>Checks, traced</h2>")
    for number, outcome in enumerate(outcomes):
        check = outcome.check
        state = "passes" if outcome.passed else "FAILS: " + "; ".join(outcome.problems)
        heading = (f"{check.name}" + (" \u2014 after the fix" if outcome.fixed else "")
                   + f": {check_packet_text(check.packet)} is "
                   + expect_text(check.fix.expect if outcome.fixed else check.expect))
        out.append(f"<h3>{escape(heading)} <span class=\"muted\">({escape(state)})</span></h3>")
        if outcome.fixed and check.fix is not None:
            change = "".join(yaml.safe_dump(doc, sort_keys=False) + "---\n"
                             for doc in check.fix.apply).rstrip("-\n")
            deleted = "".join(f"<div>delete {escape(d)}</div>" for d in check.fix.delete)
            out.append(f"<p class=\"fix\"><b>Fix it</b> {escape(check.fix.say)}</p>{deleted}"
                       + (f"<pre>{escape(change)}</pre>" if change else ""))
        # After a fix the shipped policy is no longer the one that decided: the fix shows it.
        out.append(trace_section(outcome.trace, {} if outcome.fixed else sources,
                                 f"c{number}", level=4))
    out.append(sources_section(sources))
    return page(f"Lab {lab.number:02d}: {lab.title}", "\n".join(out))
