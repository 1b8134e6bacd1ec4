"""The long fuzz campaign (``make fuzz``): thousands of hostile inputs through the real entry
point, counted by outcome and by distinct cause of failure.

    python benchmarks/fuzz_campaign.py --cases 10000 --seed 9 --write
    python benchmarks/fuzz_campaign.py --cases 10000 --seed 9 --tree /tmp/old --label 4a847b7 --write

``--tree`` runs the same cases against another checkout's ``tracer`` package (a throwaway
``git worktree`` of an older commit), to say how many failures a change removed. ``--write``
puts the figures in FUZZING.md under a heading of their own. Strategies and judge:
tests/fuzzing.py.
"""

from __future__ import annotations

import argparse
import collections
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "FUZZING.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--tree", type=Path, help="checkout whose tracer package is fuzzed")
    parser.add_argument("--label", default="this tree", help="heading for --write")
    parser.add_argument("--write", action="store_true", help="record the figures in FUZZING.md")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(args.tree.resolve() if args.tree else ROOT))
    sys.path.insert(1, str(ROOT / "tests"))
    figures = campaign(args.cases, args.seed)
    text = report(figures, args)
    print(text)
    if args.write:
        write_section(args.label, text)
    return 0


def campaign(cases: int, seed: int) -> dict:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as hypothesis_seed
    from rich.progress import Progress

    import fuzzing
    import tracer

    fuzzing.scenarios()                                 # load once, outside the timing
    family_of = {"manifest": fuzzing.manifest_cases(), "dump": fuzzing.dump_cases(),
                 "capture": fuzzing.capture_cases(), "arguments": fuzzing.argument_cases()}
    from hypothesis import strategies as st
    tagged = st.one_of(*(strategy.map(lambda case, name=name: (name, case))
                         for name, strategy in family_of.items()))
    figures: dict = {"cases": 0, "failures": 0, "causes": collections.Counter(),
                     "examples": {}, "statuses": collections.Counter(),
                     "families": collections.Counter(), "failing_families": collections.Counter(),
                     "tracer": str(Path(tracer.__file__).resolve().parent.parent)}

    with Progress(transient=True) as progress:
        task = progress.add_task("fuzzing", total=cases)

        @hypothesis_seed(seed)
        @settings(max_examples=cases, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(tagged)
        def one(tagged_case):
            family, case = tagged_case
            outcome = fuzzing.execute(case)
            problem = fuzzing.judge(outcome)
            figures["cases"] += 1
            figures["families"][family] += 1
            figures["statuses"][outcome.status if outcome.crash is None else "crash"] += 1
            if problem is not None:
                figures["failures"] += 1
                figures["failing_families"][family] += 1
                cause = _generalise(problem)
                figures["causes"][cause] += 1
                figures["examples"].setdefault(cause, case.describe())
            progress.advance(task)

        started = time.perf_counter()
        one()
        figures["seconds"] = time.perf_counter() - started
    return figures


def _generalise(problem: str) -> str:
    """One cause per kind of failure: drop the parts of a message that vary per case."""
    problem = re.sub(r"\d+ characters", "N characters", problem)
    return re.sub(r"\d+ lines", "N lines", problem)


def report(figures: dict, args) -> str:
    lines = [
        f"Command: `python benchmarks/fuzz_campaign.py --cases {args.cases} --seed {args.seed}"
        + (f" --tree {args.tree} --label {args.label}" if args.tree else "") + "`",
        f"(tracer package from `{figures['tracer']}`)",
        "",
        "| figure | value |", "| --- | --- |",
        f"| cases run | {figures['cases']:,} |",
        f"| cases breaking the promise | {figures['failures']:,} |",
        f"| distinct causes | {len(figures['causes'])} |",
        f"| time | {figures['seconds']:.0f} s ({figures['cases'] / figures['seconds']:.0f} "
        f"cases/s) |",
        "| cases by family | " + ", ".join(f"{name} {count:,}" for name, count
                                            in sorted(figures["families"].items())) + " |",
        "| outcomes | " + ", ".join(f"{status}: {count:,}" for status, count in sorted(
            figures["statuses"].items(), key=lambda item: str(item[0]))) + " |",
    ]
    if figures["causes"]:
        lines += ["", "| cases | cause | first example |", "| ---: | --- | --- |"]
        for cause, count in figures["causes"].most_common():
            example = _printable(figures["examples"][cause])[:100].replace("|", "\\|")
            lines.append(f"| {count} | {_printable(cause).replace('|', '/')} | `{example}` |")
    return "\n".join(lines)


def _printable(text: str) -> str:
    return "".join(ch if ch.isprintable() and ch != "`" else repr(ch)[1:-1] for ch in text)


def write_section(label: str, body: str) -> None:
    """Replace (or add) the ``## Campaign: <label>`` section of FUZZING.md."""
    heading = f"## Campaign: {label}"
    text = RESULTS.read_text() if RESULTS.exists() else "# Fuzzing calico-trace\n"
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    section = f"{heading}\n\n{body}\n\n"
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else \
        text.rstrip("\n") + "\n\n" + section
    RESULTS.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
