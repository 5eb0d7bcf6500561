"""Export root-cause clusters for inspection (HUDD Step 2): per cluster an image folder, a GIF and
a contact sheet.

For each cluster ``C<i>`` of an exported layer, in ``ClusterAnalysis/<layer>/``:

- ``C<i>/``: the cluster's images (hard links when the file system allows, else copies), named
  by their path in the set with ``/`` as ``-`` (``TopLeft-000123.png``);
- ``C<i>.gif``: up to 100 of its images, 0.6 s a frame (as the original tool), small images
  scaled up by an integer factor to at least 128 px;
- ``C<i>.png``: a contact sheet of up to 64 thumbnails titled with the cluster's size and class mix.

For keypoint models both draw each image's true keypoints (green) and the model's (red).

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
_TRUE, _PREDICTED = (0, 200, 60), (235, 30, 30)


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


def _marked(image: np.ndarray, predicted: np.ndarray, true: np.ndarray) -> np.ndarray:
    """An RGB copy of ``image`` with a small square at every true (green) and predicted (red) keypoint (``(K, 2)``, x, y)."""
    out = np.repeat(image[:, :, :1], 3, axis=2) if image.shape[2] == 1 else image[:, :, :3].copy()
    height, width = out.shape[:2]
    half = max(1, max(height, width) // 96)
    for points, colour in ((true, _TRUE), (predicted, _PREDICTED)):
        for x, y in np.round(points[~np.isnan(points).any(axis=1)]).astype(int):
            out[max(0, y - half):min(height, y + half + 1), max(0, x - half):min(width, x + half + 1)] = colour
    return out


def _uniform(images: list[np.ndarray]) -> list[np.ndarray]:
    """uint8 ``(H, W)`` if every image is grey, else ``(H, W, 3)`` (grey repeated, alpha dropped); each centred
    on a white canvas of the largest height and width among them (a set may hold images of several sizes)."""
    grey = all(image.shape[2] == 1 for image in images)
    shown = [image[:, :, 0] if grey else np.repeat(image[:, :, :1], 3, axis=2) if image.shape[2] == 1 else image[:, :, :3]
             for image in images]
    height, width = max(i.shape[0] for i in shown), max(i.shape[1] for i in shown)
    out = []
    for image in shown:
        canvas = np.full((height, width, *image.shape[2:]), 255, dtype=np.uint8)
        top, left = (height - image.shape[0]) // 2, (width - image.shape[1]) // 2
        canvas[top:top + image.shape[0], left:left + image.shape[1]] = image
        out.append(canvas)
    return out


def _scaled(image: np.ndarray) -> np.ndarray:
    """``image`` scaled up by an integer factor to at least 128 px."""
    factor = max(1, -(-_MIN_SIDE // max(image.shape[:2])))
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def _write_gif(path: Path, images: list[np.ndarray]) -> None:
    frames = np.stack([_scaled(image) for image in _uniform(images)])
    with atomic_path(path) as tmp:
        iio.imwrite(tmp, frames, extension=".gif", duration=int(GIF_SECONDS * 1000), loop=0)


def _mix(values: list[str]) -> str:
    return ", ".join(f"{name} {count}" for name, count in Counter(values).most_common(4)) + (", ..." if len(set(values)) > 4 else "")


def _mosaic(images: list[np.ndarray], cols: int, gap: int) -> np.ndarray:
    """The images tiled ``cols`` to a row with ``gap`` white pixels between them."""
    tiles = _uniform(images)
    height, width = tiles[0].shape[:2]
    rows = -(-len(tiles) // cols)
    sheet = np.full((rows * (height + gap) - gap, cols * (width + gap) - gap, *tiles[0].shape[2:]), 255, dtype=np.uint8)
    for i, tile in enumerate(tiles):
        top, left = (i // cols) * (height + gap), (i % cols) * (width + gap)
        sheet[top:top + height, left:left + width] = tile
    return sheet


def _write_sheet(path: Path, images: list[np.ndarray], title: str) -> None:
    """Up to 64 thumbnails, 8 to a row, under ``title``: one image drawn once (fast with many thumbnails)."""
    shown = images[:SHEET_IMAGES]
    cols = min(8, len(shown))
    rows = -(-len(shown) // cols)
    sheet = _mosaic(shown, cols, gap=max(1, max(i.shape[1] for i in shown) // 12))
    fig = plt.figure(figsize=(1.2 * cols + 0.4, 1.2 * rows + 0.8))
    ax = fig.add_axes((0.02, 0.02, 0.96, 1 - 0.5 / (1.2 * rows + 0.8) - 0.02))
    ax.imshow(sheet, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.axis("off")
    fig.suptitle(title, fontsize=9, y=1 - 0.12 / (1.2 * rows + 0.8), va="top")
    save_figure(fig, path)


def export_unit(ws: Workspace, unit: str, datasets: Path, clusters: pd.DataFrame, describe: pd.Series,
                keypoints: dict[str, tuple[np.ndarray, np.ndarray]] | None = None) -> list[Path]:
    """Export every cluster of one layer (``clusters``: image, cluster) into ``ws``, a fresh (staging)
    workspace; ``describe`` maps an image to its class (or worst keypoint) for the titles; ``keypoints``
    maps an image to its predicted and true keypoints ``(K, 2)`` to draw. Returns the paths written."""
    written = []
    for name in sorted(clusters["cluster"].unique(), key=cluster_order):
        members = clusters.loc[clusters["cluster"] == name, "image"].tolist()
        folder = ws.cluster_images_dir(unit, name)
        link_images(datasets, members, folder)
        shown = members[:max(GIF_FRAMES, SHEET_IMAGES)]
        pictures = [read_image(datasets / image) for image in shown]
        if keypoints is not None:
            pictures = [_marked(picture, *keypoints[image]) for picture, image in zip(pictures, shown)]
        _write_gif(ws.cluster_gif(unit, name), pictures[:GIF_FRAMES])
        title = f"{unit} {name}: {len(members)} images ({_mix([str(describe[m]) for m in members])})"
        if keypoints is not None:
            title += "\nkeypoints: green true, red predicted"
        _write_sheet(ws.cluster_sheet(unit, name), pictures, title)
        written += [folder, ws.cluster_gif(unit, name), ws.cluster_sheet(unit, name)]
    return written
