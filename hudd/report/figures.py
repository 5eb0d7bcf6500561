"""Figures drawn for the report, returned as PNG bytes to inline.

Rendered with matplotlib's Agg backend and encoded without metadata, so the same data gives the
same bytes and the report is reproducible.
"""

from __future__ import annotations

import math

import imageio.v3 as iio
import numpy as np
import pandas as pd

from matplotlib.ticker import MaxNLocator

from ..export.plots import plt

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

    The axes, ticks and legend are drawn once per report; each cluster redraws only its densities and
    titles over that background (matplotlib's blitting), so a report with many clusters and parameters
    draws in seconds. Each panel's densities are scaled to its height. Use as a context manager, or
    call :meth:`close`.
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
        self.edges, self.background, self.artists = [], [], []
        for ax, name in zip(self.axes, self.parameters):
            values = everything[name].dropna().to_numpy(np.float64)
            edges = np.histogram_bin_edges(values, bins=_BINS) if len(values) else np.linspace(0.0, 1.0, _BINS + 1)
            empty = np.zeros(_BINS)
            self.artists.append((ax.stairs(empty, edges, fill=True, color="#c9ced6", label="all test images", animated=True),
                                 ax.stairs(empty, edges, fill=True, color=_CLUSTER, alpha=0.3, animated=True),
                                 ax.stairs(empty, edges, color=_CLUSTER, linewidth=1.3, label="cluster", animated=True)))
            ax.title.set_animated(True)
            self.edges.append(edges)
            self.background.append(_density(values, edges))
            ax.set_xlim(edges[0], edges[-1])
            ax.set_ylim(0.0, 1.05)
            ax.tick_params(labelsize=6.5, length=2, pad=1)
            ax.xaxis.set_major_locator(MaxNLocator(4))
            ax.set_yticks([])
        handles, labels = self.axes[0].get_legend_handles_labels()
        self.fig.legend(handles, labels, loc="upper right", fontsize=8, frameon=False, ncol=2)
        self.title = self.fig.suptitle("", fontsize=10, x=0.01, y=1 - 0.08 / height, ha="left", va="top", animated=True)
        self.fig.canvas.draw()
        self.backdrop = self.fig.canvas.copy_from_bbox(self.fig.bbox)

    def png(self, title: str, cluster: pd.DataFrame, rr: dict[str, float]) -> bytes:
        """The figure for one cluster (``cluster``: its images' parameter rows) as PNG bytes."""
        canvas = self.fig.canvas
        canvas.restore_region(self.backdrop)
        for ax, name, edges, background, (grey, fill, outline) in zip(self.axes, self.parameters, self.edges, self.background, self.artists):
            density = _density(cluster[name].dropna().to_numpy(np.float64), edges)
            peak = max(float(background.max(initial=0.0)), float(density.max(initial=0.0))) or 1.0
            grey.set_data(background / peak)
            fill.set_data(density / peak)
            outline.set_data(density / peak)
            value = rr.get(name, float("nan"))
            ax.set_title(f"{name}\nRR {value:.2f}" if not math.isnan(value) else f"{name}\nRR \u2013", fontsize=8,
                         fontweight="bold" if value >= 0.5 else "normal")
            for artist in (grey, fill, outline, ax.title):
                ax.draw_artist(artist)
        self.title.set_text(title)
        self.fig.draw_artist(self.title)
        pixels = np.asarray(canvas.buffer_rgba())[:, :, :3]
        return iio.imwrite("<bytes>", pixels, extension=".png")

    def close(self) -> None:
        plt.close(self.fig)

    def __enter__(self) -> ParameterFigure:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
