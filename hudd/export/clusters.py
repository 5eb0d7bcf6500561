"""Export root-cause clusters for inspection (HUDD Step 2): per cluster an image folder, a GIF and
a contact sheet.

For each cluster ``C<i>`` of an exported layer, in ``ClusterAnalysis/<layer>/``:

- ``C<i>/``: the cluster's images (hard links when the file system allows, else copies), named
  by their path in the set with ``/`` as ``-`` (``TopLeft-000123.png``);
- ``C<i>.gif``: up to 100 of its images, 0.6 s a frame (as the original tool), small images
  scaled up by an integer factor to at least 128 px;
- ``C<i>.png``: a contact sheet of up to 64 thumbnails titled with the cluster's size and class mix.

The selected layer's clusters are also linked into ``HUDD/<layer>/`` (as the original tool).
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from pathlib import Path

import imageio.v3 as iio
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..cluster.clustering import cluster_order
from ..case.data import read_image
from ..workspace.workspace import Workspace
from ..core.files import atomic_path
from .plots import save_figure

__all__ = ["export_unit", "link_tree", "link_images", "GIF_FRAMES", "SHEET_IMAGES"]

GIF_FRAMES = 100
GIF_SECONDS = 0.6
SHEET_IMAGES = 64
_MIN_SIDE = 128


def _link(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def link_images(datasets: Path, images, folder: Path) -> None:
    """Hard-link (or copy) images, identified relative to ``datasets``, into ``folder``, named by their
    path in the set with ``/`` as ``-`` (``TopLeft-000123.png``)."""
    folder.mkdir(parents=True, exist_ok=True)
    for image in images:
        _link(datasets / image, folder / image.split("/", 1)[1].replace("/", "-"))


def link_tree(source: Path, target: Path) -> None:
    """Copy a folder tree as hard links (copies where links are impossible) to ``target``, which must not exist."""
    shutil.copytree(source, target, copy_function=lambda s, t: _link(Path(s), Path(t)))


def _frame(image: np.ndarray) -> np.ndarray:
    """uint8 ``(H, W)`` or ``(H, W, 3)``, scaled up by an integer factor to at least 128 px."""
    image = image[:, :, 0] if image.shape[2] == 1 else image[:, :, :3]
    factor = max(1, -(-_MIN_SIDE // max(image.shape[:2])))
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def _write_gif(path: Path, frames: list[np.ndarray]) -> None:
    with atomic_path(path) as tmp:
        iio.imwrite(tmp, np.stack(frames), extension=".gif", duration=int(GIF_SECONDS * 1000), loop=0)


def _mix(values: list[str]) -> str:
    return ", ".join(f"{name} {count}" for name, count in Counter(values).most_common(4)) + (", ..." if len(set(values)) > 4 else "")


def _write_sheet(path: Path, images: list[np.ndarray], title: str) -> None:
    shown = images[:SHEET_IMAGES]
    cols = min(8, len(shown))
    rows = -(-len(shown) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.2 * cols + 0.4, 1.2 * rows + 0.8), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image in zip(axes.flat, shown):
        gray = image.shape[2] == 1
        ax.imshow(image[:, :, 0] if gray else image[:, :, :3], cmap="gray" if gray else None, vmin=0, vmax=255)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


def export_unit(ws: Workspace, unit: str, datasets: Path, clusters: pd.DataFrame, describe: pd.Series) -> list[Path]:
    """Export every cluster of one layer (``clusters``: image, cluster) into ``ws``, a fresh (staging)
    workspace; ``describe`` maps an image to its class (or worst keypoint) for the titles. Returns the
    paths written."""
    written = []
    for name in sorted(clusters["cluster"].unique(), key=cluster_order):
        members = clusters.loc[clusters["cluster"] == name, "image"].tolist()
        folder = ws.cluster_images_dir(unit, name)
        link_images(datasets, members, folder)
        pictures = [read_image(datasets / image) for image in members[:max(GIF_FRAMES, SHEET_IMAGES)]]
        _write_gif(ws.cluster_gif(unit, name), [_frame(p) for p in pictures[:GIF_FRAMES]])
        title = f"{unit} {name}: {len(members)} images ({_mix([str(describe[m]) for m in members])})"
        _write_sheet(ws.cluster_sheet(unit, name), pictures, title)
        written += [folder, ws.cluster_gif(unit, name), ws.cluster_sheet(unit, name)]
    return written
