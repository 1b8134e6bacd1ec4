"""``python -m tracer.capture FILE [--keylog KEYS] [--vxlan-port N]``: what a capture holds.

A summary for checking a file before replaying it: rows, skipped frames and non-ordinary
rows by reason, warnings. Bad input is one line on stderr and exit status 2, as everywhere
in calico-trace.
"""

from __future__ import annotations

import argparse
import sys

from tracer.capture.reader import read_capture
from tracer.errors import InputError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tracer.capture", description=__doc__)
    parser.add_argument("file")
    parser.add_argument("--keylog")
    parser.add_argument("--vxlan-port", type=int, default=4789)
    args = parser.parse_args(argv)
    try:
        cap = read_capture(args.file, keylog=args.keylog, vxlan_port=args.vxlan_port)
    except InputError as err:
        print(f"calico-trace: error: {err}", file=sys.stderr)
        return 2
    for warning in cap.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"{args.file}: {cap.frames} frames, {len(cap)} packets")
    for what, counts in (("skipped", cap.skipped_counts()), ("rows", cap.reason_counts())):
        for text, count in sorted(counts.items()):
            print(f"  {what}: {count} {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
