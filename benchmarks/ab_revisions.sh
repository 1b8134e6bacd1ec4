#!/usr/bin/env bash
# Side-by-side: bench_pipeline at two revisions, interleaved, traces per CPU second.
#   benchmarks/ab_revisions.sh BEFORE_REV AFTER_REV [ROUNDS]
# Each revision is checked out in a temporary worktree and run with this checkout's venv
# (PYTHONPATH puts its tracer first); the rounds alternate so both see the same machine load.
set -euo pipefail
top=$(git rev-parse --show-toplevel)
py="$top/.venv/bin/python"
rounds=${3:-5}
work=$(mktemp -d)
trap 'git -C "$top" worktree remove --force "$work/a" 2>/dev/null; git -C "$top" worktree remove --force "$work/b" 2>/dev/null; rm -rf "$work"' EXIT
git -C "$top" worktree add -q --detach "$work/a" "$1"
git -C "$top" worktree add -q --detach "$work/b" "$2"
for _ in $(seq "$rounds"); do
  for side in a b; do
    # The older revision's bench may lack --clock: time it per CPU second from outside.
    (cd "$work/$side" && PYTHONPATH="$work/$side" "$py" -c '
import runpy, sys, time
time.perf_counter = time.process_time
sys.argv = ["bench_pipeline.py", "--packets", "800", "--repeat", "1"]
runpy.run_path("benchmarks/bench_pipeline.py", run_name="__main__")' | sed "s/^/$side /")
  done
done | "$py" -c '
import collections, re, statistics, sys
runs = collections.defaultdict(list)
for line in sys.stdin:
    side, rest = line.split(" ", 1)
    case = re.sub(r"\s+[\d,]+ traces/s.*", "", rest).strip()
    runs[case, side].append(int(re.search(r"([\d,]+) traces/s", rest).group(1).replace(",", "")))
print("| case | before (median) | after (median) | after/before |")
print("| --- | ---: | ---: | ---: |")
for case in sorted({c for c, _ in runs}):
    a, b = statistics.median(runs[case, "a"]), statistics.median(runs[case, "b"])
    print(f"| {case} | {a:,.0f} | {b:,.0f} | {b / a:.2f} |")'
