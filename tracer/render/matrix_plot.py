"""``matrix --plot FILE.png|.svg``: the reachability heatmap as an image (matplotlib)."""

from __future__ import annotations

from itertools import groupby
from pathlib import Path

from tracer.errors import InputError
from tracer.policy.evaluate import protocol_name
from tracer.policy.matrix import ReachabilityMatrix

FORMATS = (".png", ".svg")


def plot_matrix(result: ReachabilityMatrix, path: str) -> None:
    """Write the heatmap: green allowed, red denied, lines between namespaces, namespace names
    on both axes (pod names too when there are few enough to read)."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise InputError(f"--plot writes {' or '.join(FORMATS)} files", file=path,
                         obj="--plot")
    import matplotlib
    matplotlib.use("Agg")                    # files only: no display needed
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    pods = result.pods
    count = len(pods)
    size = min(16.0, max(4.0, count * 0.12 + 2))
    fig, ax = plt.subplots(figsize=(size + 1.5, size), dpi=100)
    ax.imshow(result.allowed.astype(int), cmap=ListedColormap(["#cf222e", "#2da44e"]),
              vmin=0, vmax=1, interpolation="nearest")
    bounds, centres, names = [], [], []
    at = 0
    for ns, members in groupby(pods, key=lambda key: key.split("/", 1)[0]):
        size_ns = len(list(members))
        centres.append(at + size_ns / 2 - 0.5)
        names.append(ns)
        at += size_ns
        bounds.append(at - 0.5)
    for edge in bounds[:-1]:
        ax.axhline(edge, color="white", linewidth=1.5)
        ax.axvline(edge, color="white", linewidth=1.5)
    if count <= 40:
        ax.set_xticks(range(count), pods, rotation=90, fontsize=7)
        ax.set_yticks(range(count), pods, fontsize=7)
    else:
        ax.set_xticks(centres, names, rotation=90, fontsize=8)
        ax.set_yticks(centres, names, fontsize=8)
    probe = protocol_name(result.probe.protocol)
    if result.probe.port is not None:
        probe += f" port {result.probe.port}"
    ax.set_title(f"Reachability for {probe}\n{int(result.allowed.sum())} of {count * count} "
                 "pairs allowed (green)", fontsize=10)
    ax.set_xlabel("to")
    ax.set_ylabel("from")
    fig.tight_layout()
    try:
        fig.savefig(path, format=suffix[1:])
    except OSError as err:
        raise InputError(f"cannot write: {err.strerror}", file=path, obj="--plot") from None
    finally:
        plt.close(fig)
