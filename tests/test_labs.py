"""The teaching labs: every lab's checks and step commands hold, a wrong expectation or a fix
that fixes nothing fails the check, bad lab.yaml is one line, and ``lab run`` grades answers."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from tracer.cli import cli
from tracer.commands.lab import run_step
from tracer.errors import InputError
from tracer.lab.checks import run_checks
from tracer.lab.spec import find_labs, load_lab

LABS = Path(__file__).resolve().parent.parent / "scenarios" / "labs"
LAB_DIRS = find_labs(LABS)

# The topics issue #14 asks the labs to cover, each with a word its lab's title must carry.
TOPICS = {"default deny": "Default deny", "frontend to backend 6379": "6379",
          "namespace labels": "namespace labels", "egress and DNS": "DNS",
          "tiers, Pass, GlobalNetworkPolicy": "GlobalNetworkPolicy", "staged": "Staged",
          "VXLAN underlay": "VXLAN", "IPIP CrossSubnet": "CrossSubnet",
          "WireGuard": "WireGuard", "MTU black hole": "MTU", "NAT outgoing": "NAT outgoing",
          "ClusterIP Service": "ClusterIP", "conntrack": "Conntrack",
          "host endpoint failsafe": "failsafe"}


def test_at_least_thirteen_labs_cover_every_topic():
    labs = [load_lab(path) for path in LAB_DIRS]
    assert len(labs) >= 13
    assert [lab.number for lab in labs] == sorted({lab.number for lab in labs})
    titles = " | ".join(lab.title for lab in labs)
    missing = [topic for topic, word in TOPICS.items() if word not in titles]
    assert not missing, f"no lab teaches: {missing}"
    assert sum(1 for lab in labs for check in lab.checks if check.fix) >= 5


@pytest.mark.parametrize("path", LAB_DIRS, ids=lambda p: p.name)
def test_lab_checks_pass_and_every_step_runs(path: Path):
    lab = load_lab(path)
    outcomes = run_checks(lab)
    assert outcomes, "a lab checks something"
    failed = [(o.label(), o.problems) for o in outcomes if not o.passed]
    assert not failed
    fixes = [o for o in outcomes if o.fixed]
    for fixed in fixes:              # a fix changes the outcome the check saw before it
        before = next(o for o in outcomes if o.check is fixed.check and not o.fixed)
        assert (before.trace.verdict, before.trace.reason, before.trace.hops) != (
            fixed.trace.verdict, fixed.trace.reason, fixed.trace.hops)
    for step in lab.steps:
        if step.run:
            code, text = run_step(cli, lab, step.run)
            assert code == 0, f"{step.run}: {text}"
            assert text.strip()


def copy_lab(tmp_path: Path, name: str = "02-allow-frontend-to-backend") -> Path:
    target = tmp_path / "labs" / name
    shutil.copytree(LABS / name, target)
    return target


def edit_lab(path: Path, change) -> None:
    doc = yaml.safe_load((path / "lab.yaml").read_text())
    change(doc)
    (path / "lab.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))


def test_check_fails_when_the_expected_verdict_is_wrong(tmp_path):
    lab = copy_lab(tmp_path)
    edit_lab(lab, lambda d: d["checks"][1]["expect"].update(verdict="allowed"))
    result = CliRunner().invoke(cli, ["lab", "check", "2", "--labs", str(lab.parent)])
    assert result.exit_code == 1
    assert "FAIL lab 02" in result.output
    assert "batch stays out: verdict: expected allowed, got dropped [default-deny]" in (
        result.output)


def test_check_fails_when_the_fix_does_not_fix(tmp_path):
    lab = copy_lab(tmp_path)

    def wrong_port(doc):
        fix = doc["checks"][0]["fix"]
        fix["apply"] = fix["apply"].replace("port: 6379", "port: 6381")
    edit_lab(lab, wrong_port)
    result = CliRunner().invoke(cli, ["lab", "check", "2", "--labs", str(lab.parent)])
    assert result.exit_code == 1
    assert "(after the fix): verdict: expected allowed, got dropped [default-deny]" in (
        result.output)


def test_the_fix_is_applied_to_a_copy_never_to_the_lab(tmp_path):
    lab = copy_lab(tmp_path)
    before = {p.name: p.read_text() for p in lab.iterdir()}
    run_checks(load_lab(lab))
    assert {p.name: p.read_text() for p in lab.iterdir()} == before


BAD_LABS = [
    (lambda d: d.pop("story"), "lab.yaml: missing story"),
    (lambda d: d.update(level="expert"), "level: level 'expert' is not one of beginner"),
    (lambda d: d["checks"][0]["expect"].update(verdict="maybe"),
     "checks[0].expect.verdict: 'maybe' is not allowed or dropped"),
    (lambda d: d["checks"][0]["expect"].update(reason="bad-luck"),
     "checks[0].expect.reason: 'bad-luck' is not a drop reason"),
    (lambda d: d["checks"][1]["packet"].update(port="6379"),
     "checks[1].packet.port: expected a number"),
    (lambda d: d["checks"][1]["packet"].update(colour="red"),
     "checks[1].packet.colour: unknown key"),
    (lambda d: d["steps"][0].update(run="kubectl get pods"),
     "steps[0].run: a step runs a calico-trace command"),
    (lambda d: d["steps"][0].update(run="calico-trace lab check 2"),
     "steps[0].run: a step cannot run a lab command"),
    (lambda d: d["checks"][0]["fix"].update(apply="kind: [unclosed"),
     "checks[0].fix.apply: not valid YAML"),
    (lambda d: d["checks"][0]["fix"].update(apply="kind: NetworkPolicy\n"),
     "checks[0].fix.apply[0]: missing apiVersion, metadata"),
    (lambda d: d["questions"][0].update(accept=[]),
     "questions[0].accept: expected a non-empty list"),
]


@pytest.mark.parametrize("change,message", BAD_LABS, ids=[m.split(":")[0] for _, m in BAD_LABS])
def test_bad_lab_yaml_is_one_line_naming_file_and_object(tmp_path, change, message):
    lab = copy_lab(tmp_path)
    edit_lab(lab, change)
    with pytest.raises(InputError) as caught:
        load_lab(lab)
    text = str(caught.value)
    assert "\n" not in text
    assert text.startswith(str(lab / "lab.yaml") + ": ")
    assert message in text


def test_bad_lab_through_the_cli_exits_2_without_a_traceback(tmp_path):
    import subprocess
    import sys
    lab = copy_lab(tmp_path)
    edit_lab(lab, lambda d: d.update(level="expert"))
    program = Path(sys.executable).parent / "calico-trace"        # the installed entry point
    done = subprocess.run([str(program), "lab", "show", "2", "--labs", str(lab.parent)],
                          capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "level 'expert' is not one of" in done.stderr


def test_a_fix_that_deletes_a_missing_object_is_one_line(tmp_path):
    lab = copy_lab(tmp_path)
    edit_lab(lab, lambda d: d["checks"][0]["fix"].update(delete=["NetworkPolicy/shop/nope"]))
    with pytest.raises(InputError, match="deletes NetworkPolicy/shop/nope, which the scenario"):
        run_checks(load_lab(lab))


def test_list_and_show():
    listed = CliRunner().invoke(cli, ["lab", "list"])
    assert listed.exit_code == 0
    assert len(listed.output.splitlines()) == len(LAB_DIRS)
    shown = CliRunner().invoke(cli, ["lab", "show", "12"])
    assert shown.exit_code == 0
    for part in ("Lab 12: Conntrack", "Story:", "Steps:", "$ calico-trace packet -f ",
                 "--tcp-flags SYN,ACK", "Questions:", "Answers:", "Checks (calico-trace lab"):
        assert part in shown.output
    assert "LAB" not in shown.output.replace("Lab ", "")
    missing = CliRunner().invoke(cli, ["lab", "show", "99"])
    assert isinstance(missing.exception, InputError) and "no lab 99" in str(missing.exception)


def test_run_walks_through_steps_and_grades_answers():
    lab = load_lab(LABS / "01-default-deny")
    answers = ["default-deny", "a policy rule", "nobody selects it, so the profile allows"]
    keys = "\n" * len(lab.steps) + "\n".join(answers) + "\n"
    result = CliRunner().invoke(cli, ["lab", "run", "1"], input=keys)
    assert result.exit_code == 0, result.output
    assert "VERDICT  dropped [default-deny]" in result.output       # step 2 ran
    assert result.output.count("Right.") == 2
    assert "Not quite. The answer: the end of tier default" in result.output
    assert "2 of 3 right." in result.output


def test_answers_are_matched_loosely_but_not_emptily():
    question = load_lab(LABS / "07-vxlan-cross-node").questions[1]
    assert question.is_right("UDP port 4789")
    assert question.is_right(" 4789 ")
    assert not question.is_right("8472")
    assert not question.is_right("")
