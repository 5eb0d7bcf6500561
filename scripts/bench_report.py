"""Benchmark the report's figures: the per-cluster parameter figure and the contact sheet, in one run.

For a report of ``--clusters`` clusters over ``--parameters`` simulator parameters, prints the time of:
  - parameter figures drawn as one figure per cluster (the baseline: subplots, histograms as step
    outlines, ``savefig``) vs hudd's :class:`hudd.report.figures.ParameterFigure`, whose axes are drawn once
    per report and each cluster's densities and titles blitted over them (target >= 2x);
  - contact sheets of 64 thumbnails as one mosaic image (hudd's) vs one axes per thumbnail (the baseline).

Usage: .venv/bin/python scripts/bench_report.py [--clusters 10] [--parameters 35] [--side 64]
"""

import argparse
import io
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from hudd.export.clusters import SHEET_IMAGES, _write_sheet
from hudd.export.plots import plt, save_figure
from hudd.report.figures import ParameterFigure


def per_thumbnail_sheet(path: Path, images: list[np.ndarray], title: str) -> None:
    """The baseline contact sheet: one axes per thumbnail."""
    cols = min(8, len(images))
    rows = -(-len(images) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.2 * cols + 0.4, 1.2 * rows + 0.8), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image in zip(axes.flat, images):
        ax.imshow(image, vmin=0, vmax=255)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


def per_cluster_figure(cluster: pd.DataFrame, everything: pd.DataFrame, parameters: list[str], rr: dict) -> bytes:
    """The baseline parameter figure: a new figure with one axes per parameter, drawn and saved in full."""
    cols = min(5, len(parameters))
    rows = math.ceil(len(parameters) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.3 * cols, 1.75 * rows + 0.6), squeeze=False)
    for ax, name in zip(axes.flat, parameters):
        edges = np.histogram_bin_edges(everything[name], bins=20)
        ax.stairs(np.histogram(everything[name], bins=edges, density=True)[0], edges, fill=True, color="#c9ced6")
        ax.stairs(np.histogram(cluster[name], bins=edges, density=True)[0], edges, color="#d9480f")
        ax.set_title(f"{name}\nRR {rr[name]:.2f}", fontsize=8)
        ax.set_yticks([])
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clusters", type=int, default=10)
    parser.add_argument("--parameters", type=int, default=35)
    parser.add_argument("--side", type=int, default=64, help="thumbnail side in pixels")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    names = [f"p{i}" for i in range(args.parameters)]
    table = pd.DataFrame(rng.random((3000, args.parameters)), columns=names)
    clusters = [table.sample(60, random_state=i) for i in range(args.clusters)]
    rr = {name: 0.3 for name in names}

    def fresh():
        for cluster in clusters:
            per_cluster_figure(cluster, table, names, rr)

    def reused():
        with ParameterFigure(table, names) as figure:
            for cluster in clusters:
                figure.png("cluster", cluster, rr)

    base, ours = seconds(fresh), seconds(reused)
    print(f"parameter figures, {args.clusters} clusters x {args.parameters} parameters: a figure per cluster {base:.2f} s, "
          f"axes drawn once {ours:.2f} s: {base / ours:.2f}x (target >= 2x)")
    images = [rng.integers(0, 256, (args.side, args.side, 3), dtype=np.uint8) for _ in range(SHEET_IMAGES)]
    with tempfile.TemporaryDirectory() as folder:
        base = seconds(lambda: per_thumbnail_sheet(Path(folder) / "a.png", images, "C1: 64 images"))
        ours = seconds(lambda: _write_sheet(Path(folder) / "b.png", images, "C1: 64 images"))
    print(f"contact sheet of {SHEET_IMAGES} thumbnails ({args.side} px): one axes per thumbnail {base:.2f} s, "
          f"one mosaic {ours:.2f} s: {base / ours:.2f}x")


if __name__ == "__main__":
    main()
