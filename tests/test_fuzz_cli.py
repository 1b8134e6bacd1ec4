"""The fixed-seed part of the fuzz suite (``make test``): hostile inputs of every family
through the real entry point; each must end with status 0, 1 or 2, no traceback, and on 2 one
bounded, printable error line. ``make fuzz`` runs the long campaign (benchmarks/fuzz_campaign.py).
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings

import fuzzing

SCALE = float(os.environ.get("FUZZ_SCALE", "1"))


def fixed(examples: int):
    return settings(max_examples=max(1, int(examples * SCALE)), derandomize=True,
                    deadline=None, database=None, suppress_health_check=list(HealthCheck))


def keeps_the_promise(case: fuzzing.Case) -> fuzzing.Outcome:
    outcome = fuzzing.execute(case)
    problem = fuzzing.judge(outcome)
    assert problem is None, f"{problem}\n{case.describe()}\n{outcome.crash or outcome.stderr}"
    return outcome


@fixed(500)
@given(fuzzing.manifest_cases())
def test_mutated_manifests(case):
    keeps_the_promise(case)


@fixed(250)
@given(fuzzing.dump_cases())
def test_mutated_dumps(case):
    keeps_the_promise(case)


@fixed(250)
@given(fuzzing.capture_cases())
def test_garbled_captures(case):
    keeps_the_promise(case)


@fixed(300)
@given(fuzzing.argument_cases())
def test_random_arguments(case):
    keeps_the_promise(case)


# The judge itself must be able to fail: a traceback, a stray status, a two-line error.

def test_the_judge_sees_a_traceback():
    def broken(argv):
        raise KeyError(argv[0])
    outcome = fuzzing.run(broken, ["x"])
    assert fuzzing.judge(outcome) == "traceback: KeyError at test_fuzz_cli.py:broken"


@pytest.mark.parametrize("stderr, status, verdict", [
    ("calico-trace: error: one line\n", 2, None),
    ("warning: fine\ncalico-trace: error: one line\n", 2, None),
    ("Usage: x\n\nError: two\n", 2,
     "status 2 without exactly one error line: 3 lines, first 'Usage: x'"),
    ("calico-trace: error: a\x00b\n", 2, "stderr line with a control character"),
    ("calico-trace: error: " + "x" * 2000 + "\n", 2, "stderr line of 2021 characters"),
    ("", 3, "exit status 3"),
])
def test_the_judge_sees_broken_promises(stderr, status, verdict):
    def entry(argv):
        import sys
        sys.stderr.write(stderr)
        raise SystemExit(status)
    found = fuzzing.judge(fuzzing.run(entry, []))
    assert (found is None) if verdict is None else found.startswith(verdict)
