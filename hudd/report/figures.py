"""Figures drawn for the report, returned as PNG bytes to inline.

They go through :func:`hudd.export.plots.figure_png` (Agg backend, no PNG metadata), so the same
data gives the same bytes and the report is reproducible.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from matplotlib.ticker import MaxNLocator

from ..export.plots import figure_png, plt

__all__ = ["ParameterFigure"]

_COLUMNS = 5
_BINS = 20
_CLUSTER = "#d9480f"


def _density(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    counts, _ = np.histogram(values, bins=edges)
    widths = np.diff(edges)
    return counts / (counts.sum() * widths) if counts.sum() else counts.astype(np.float64)


class ParameterFigure:
    """Small multiples, one per simulator parameter: its density over a cluster's images (orange outline)
    against all test images (grey), each titled with the parameter's variance ratio RR (bold when >= 0.5).

    The axes and the grey densities are laid out once (fixed margins, step outlines, no bar patches) and each
    cluster only swaps its outline in, so a report with many clusters and parameters draws in seconds.
    Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, everything: pd.DataFrame, parameters: list[str]):
        self.parameters = list(parameters)
        cols = min(_COLUMNS, len(self.parameters))
        rows = math.ceil(len(self.parameters) / cols)
        height = 1.75 * rows + 0.6
        self.fig, axes = plt.subplots(rows, cols, figsize=(2.3 * cols, height), squeeze=False)
        self.fig.subplots_adjust(left=0.02, right=0.98, bottom=0.3 / height, top=1 - 0.75 / height,
                                 wspace=0.12, hspace=0.95 / 1.75 + 0.1)
        for ax in axes.flat[len(self.parameters):]:
            ax.axis("off")
        self.axes = list(axes.flat[:len(self.parameters)])
        self.edges, self.background, self.fills, self.outlines = [], [], [], []
        for ax, name in zip(self.axes, self.parameters):
            values = everything[name].dropna().to_numpy(np.float64)
            edges = np.histogram_bin_edges(values, bins=_BINS) if len(values) else np.linspace(0.0, 1.0, _BINS + 1)
            background = _density(values, edges)
            ax.stairs(background, edges, fill=True, color="#c9ced6", label="all test images")
            empty = np.zeros(_BINS)
            self.fills.append(ax.stairs(empty, edges, fill=True, color=_CLUSTER, alpha=0.3))
            self.outlines.append(ax.stairs(empty, edges, color=_CLUSTER, linewidth=1.3, label="cluster"))
            self.edges.append(edges)
            self.background.append(float(background.max(initial=0.0)))
            ax.set_xlim(edges[0], edges[-1])
            ax.tick_params(labelsize=6.5, length=2, pad=1)
            ax.xaxis.set_major_locator(MaxNLocator(4))
            ax.set_yticks([])
        handles, labels = self.axes[0].get_legend_handles_labels()
        self.fig.legend(handles, labels, loc="upper right", fontsize=8, frameon=False, ncol=2)
        self.title = self.fig.suptitle("", fontsize=10, x=0.01, y=1 - 0.08 / height, ha="left", va="top")

    def png(self, title: str, cluster: pd.DataFrame, rr: dict[str, float]) -> bytes:
        """The figure for one cluster (``cluster``: its images' parameter rows) as PNG bytes."""
        for i, (ax, name) in enumerate(zip(self.axes, self.parameters)):
            members = cluster[name].dropna().to_numpy(np.float64)
            density = _density(members, self.edges[i])
            self.fills[i].set_data(density)
            self.outlines[i].set_data(density)
            ax.set_ylim(0.0, 1.05 * max(self.background[i], float(density.max(initial=0.0))) or 1.0)
            value = rr.get(name, float("nan"))
            ax.set_title(f"{name}\nRR {value:.2f}" if not math.isnan(value) else f"{name}\nRR \u2013", fontsize=8,
                         fontweight="bold" if value >= 0.5 else "normal")
        self.title.set_text(title)
        return figure_png(self.fig)

    def close(self) -> None:
        plt.close(self.fig)

    def __enter__(self) -> ParameterFigure:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
