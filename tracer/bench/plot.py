"""The growth plot: packets per CPU second against rule count, one line per engine."""

from __future__ import annotations

from tracer.bench.suite import Record
from tracer.errors import InputError


def plot_growth(records: list[Record], path: str) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InputError("--plot needs matplotlib (pip install 'calico-trace[bench]')",
                         file=path) from None
    growth = [r for r in records if r.name.startswith("growth")]
    if not growth:
        raise InputError("no growth measurements to plot", file=path)
    lines: dict[str, list[tuple[int, float]]] = {}
    for r in growth:
        lines.setdefault(r.engine, []).append((r.rules or 0, r.value))
    lines["reference"] = sorted({(r.rules or 0, r.reference_value or 0) for r in growth})
    figure, axes = plt.subplots(figsize=(7, 4.5))
    styles = {"compiled": "o-", "compiled-linear": "s--", "reference": "^:"}
    for engine, points in lines.items():
        points.sort()
        axes.plot([p[0] for p in points], [p[1] for p in points], styles.get(engine, "x-"),
                  label=engine)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("rules in the chain (ClassBench-style ACL)")
    axes.set_ylabel("new-flow verdicts per CPU second")
    axes.set_title("calico-trace engines: verdict rate as rules grow")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    try:
        figure.savefig(path, dpi=110)
    except OSError as err:
        raise InputError(f"cannot write the plot: {err.strerror}", file=path) from None
    finally:
        plt.close(figure)
