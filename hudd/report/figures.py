"""Figures drawn for the report, returned as PNG bytes to inline.

They go through :func:`hudd.export.plots.save_figure` (Agg backend, no PNG metadata), so the same
data gives the same bytes and the report is reproducible.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from matplotlib.ticker import MaxNLocator

from ..export.plots import plt, save_figure

__all__ = ["png_bytes", "parameter_figure"]

_COLUMNS = 5
_BINS = 20


def png_bytes(fig) -> bytes:
    """Save ``fig`` with :func:`save_figure` (and close it); return the PNG's bytes."""
    with tempfile.TemporaryDirectory(prefix="hudd-report-") as folder:
        path = Path(folder) / "figure.png"
        save_figure(fig, path)
        return path.read_bytes()


def _density(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    counts, _ = np.histogram(values, bins=edges)
    widths = np.diff(edges)
    return counts / (counts.sum() * widths) if counts.sum() else counts.astype(np.float64)


def parameter_figure(title: str, cluster: pd.DataFrame, everything: pd.DataFrame, parameters: list[str], rr: dict[str, float]) -> bytes:
    """Small multiples, one per simulator parameter: its density over the cluster's images (orange
    outline) against all test images (grey), each titled with the parameter's variance ratio RR (bold when >= 0.5).

    Drawn as step outlines (no bar patches) and laid out with fixed margins (no tight_layout),
    so a figure takes a fraction of a second even with many parameters.
    """
    cols = min(_COLUMNS, len(parameters))
    rows = math.ceil(len(parameters) / cols)
    height = 1.75 * rows + 0.6
    fig, axes = plt.subplots(rows, cols, figsize=(2.3 * cols, height), squeeze=False)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.3 / height, top=1 - 0.75 / height, wspace=0.12, hspace=0.95 / 1.75 + 0.1)
    for ax in axes.flat[len(parameters):]:
        ax.axis("off")
    for ax, name in zip(axes.flat, parameters):
        values = everything[name].dropna().to_numpy(np.float64)
        members = cluster[name].dropna().to_numpy(np.float64)
        edges = np.histogram_bin_edges(values if len(values) else members, bins=_BINS)
        ax.stairs(_density(values, edges), edges, fill=True, color="#c9ced6", label="all test images")
        cluster_density = _density(members, edges)
        ax.stairs(cluster_density, edges, fill=True, color="#d9480f", alpha=0.3)
        ax.stairs(cluster_density, edges, color="#d9480f", linewidth=1.3, label="cluster")
        value = rr.get(name, float("nan"))
        ax.set_title(f"{name}\nRR {value:.2f}" if not math.isnan(value) else f"{name}\nRR \u2013", fontsize=8,
                     fontweight="bold" if value >= 0.5 else "normal")
        ax.tick_params(labelsize=6.5, length=2, pad=1)
        ax.xaxis.set_major_locator(MaxNLocator(4))
        ax.set_yticks([])
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper right", fontsize=8, frameon=False, ncol=2)
    fig.suptitle(title, fontsize=10, x=0.01, y=1 - 0.08 / height, ha="left", va="top")
    return png_bytes(fig)
