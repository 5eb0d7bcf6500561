"""Step 1b, ``hudd cluster``: per layer, cluster the error-inducing images by their heatmaps.

For every layer in ``Heatmaps/``: min-max normalise over all error-inducing images of the layer,
Euclidean distance matrix (:mod:`hudd.cluster.distance`), Ward linkage, WICD for every k in
``k_min .. min(n // 2, k_max)``, the knee of its derivative (:func:`hudd.cluster.clustering.choose_k`),
then the layer with the minimal WICD at its chosen k is selected (paper, section IV-B).

Keypoint models (the paper's FLD case): images are first grouped by the face element (keypoint
group) of their worst keypoint; each group is clustered on its own and selects its own layer;
its cluster ids carry the group name (``upper_lid-C3``) and its files live in
``ClusterAnalysis/<group>/<layer>/``.

Outputs: ``ClusterAnalysis/<layer>/{distances.npy (float32), distances.xlsx (while n + 1 fits
Excel's 16,384 columns), wicd.csv, wicd.png, clusters.csv}``, ``ClusterAnalysis/paper/clusters.csv``
(image, cluster, layer: the clusters of the selected layers) and ``summary.csv`` (group, layer, alias, n, k, wicd, knee_method, xlsx, selected, and
method ``paper``, representation and why: that k, that layer or why not, in words).
Fewer than four images in a group give one cluster (no k to choose), with a note.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..cluster.clustering import ward_clusters, why_k
from ..cluster.distance import euclidean_distances, minmax_scale
from ..cluster.naming import cluster_name, unit_name
from ..core.errors import HuddError
from ..methods import FEATURE_METHODS, PAPER
from ..export.tables import EXCEL_MAX_COLUMNS, write_distance_sheet
from ..export.wicd import write_wicd
from ..core.progress import echo, note, progress
from ..workspace.workspace import Workspace
from ..core.files import remove, save_npy, write_csv
from ..workspace.readers import check_images, load_array, read_table, redo
from ..workspace.tables import read_index, read_layers, read_summary
from .common import Context, run_step

__all__ = ["ClusterOutcome", "run", "VERSION"]

VERSION = 4  # 2: leaves ClusterAnalysis/blackbox/ alone (and the other feature methods' folders); 3: summary.csv says why;
# 4: its final clusters in ClusterAnalysis/paper/clusters.csv (HUDD/clusters.csv is the active method's)


@dataclass
class ClusterOutcome:
    """``summary.csv`` and ``clusters.csv`` as tables."""

    ran: bool
    summary: pd.DataFrame
    clusters: pd.DataFrame


def _groups(ctx: Context, index: pd.DataFrame) -> dict[str, np.ndarray]:
    """Row indices per keypoint group of the worst keypoint; one unnamed group for classification."""
    spec = ctx.model.spec
    if spec.task != "keypoints":
        return {"": np.arange(len(index))}
    group_of = {k: name for name, members in spec.keypoint_groups.items() for k in members}
    names = np.array([group_of.get(int(k), "all") for k in index["worst_keypoint"]], dtype=object)
    return {name: np.flatnonzero(names == name) for name in sorted(set(names))}


def _cluster_unit(ctx: Context, ws: Workspace, layer: str, heatmaps: np.ndarray, rows: np.ndarray, scale, images: list[str],
                  group: str) -> dict:
    unit = unit_name(group, layer)
    n = len(rows)
    data = heatmaps if len(rows) == len(heatmaps) else heatmaps[rows]
    distances = euclidean_distances(data, scale=scale, device=ctx.device)
    save_npy(ws.distances_npy(unit), distances.astype(np.float32))
    xlsx = "written" if n + 1 <= EXCEL_MAX_COLUMNS else f"skipped: {n} images exceed Excel's {EXCEL_MAX_COLUMNS} columns"
    if n + 1 <= EXCEL_MAX_COLUMNS:
        write_distance_sheet(ws.distances_xlsx(unit), distances, images)
    ward = ward_clusters(distances, k_min=ctx.config.k_min, k_max=ctx.config.k_max)
    write_wicd(ws, unit, ward, f"{unit} ({n} images)")
    write_csv(ws.layer_clusters_csv(unit), pd.DataFrame({"image": images, "cluster": [cluster_name(group, l) for l in ward.labels]}))
    return {"group": group, "layer": layer, "n": n, "k": ward.k, "wicd": ward.wicd, "knee_method": ward.method, "xlsx": xlsx}


def _checked_heatmaps(ws: Workspace, layer: str, index: pd.DataFrame) -> np.ndarray:
    """``Heatmaps/<layer>.npy`` memory-mapped: ``(n, N, M)`` numbers, one row per row of ``images.csv``."""
    return load_array(ws.heatmap(layer), ndim=3, rows=len(index), mmap=True, fix=redo("heatmaps"))


def _scale(ws: Workspace, layer: str, heatmaps: np.ndarray, index: pd.DataFrame) -> tuple[float, float]:
    """The min-max scale of a layer's heatmaps; a HuddError naming the image whose heatmap is not finite."""
    try:
        return minmax_scale(heatmaps)
    except ValueError as exc:
        row = int(str(exc).split()[1])
        raise HuddError(f"{ws.heatmap(layer)}: the heatmap of {index['image'][row]} has a NaN or infinite value; "
                        f"rerun `hudd heatmaps --force` and check the model") from None


def _explained(summary: pd.DataFrame, best: pd.Series) -> pd.DataFrame:
    """``summary`` with the columns method, representation and why (that k; that layer, or why not)."""
    chosen = summary.loc[best.to_numpy()].set_index("group")
    why = []
    for row in summary.itertuples():
        winner = chosen.loc[row.group]
        layers = int((summary["group"] == row.group).sum())
        layer = (f"selected: the lowest WICD of the {layers} layers" if row.selected
                 else f"not selected: WICD above {winner['wicd']:.4g} of {winner['layer']}")
        why.append(f"{why_k(row.k, row.knee_method)}; {layer}")
    representation = [f"LRP relevance at the input of {layer}, min-max normalised over the error images; Euclidean, Ward"
                      for layer in summary["layer"]]
    return summary.assign(method=PAPER, representation=representation, why=why)


def run(ctx: Context, *, force: bool = False) -> ClusterOutcome:
    """Run (or skip, when current) the cluster step; see the module docstring."""
    ws = ctx.workspace
    entry = ws.step_entry("heatmaps")
    if not entry or not entry.get("done") or not ws.heatmap_layers.is_file():
        raise HuddError(f"{ws.heatmaps_dir}: no finished heatmaps; run `hudd heatmaps {ctx.case.root}` first")
    layers = read_layers(ws)
    left_out = len(read_layers(ws, every=True)) - len(layers)
    if left_out:
        note(f"cluster: {left_out} layers left out by `hudd heatmaps` (no heatmaps; why: {ws.heatmap_layers})")
    index = read_index(ws)
    check_images(ws.heatmap_index, index["image"], ctx.case.datasets, redo("heatmaps"))
    config = {key: getattr(ctx.config, key) for key in ("k_min", "k_max")}
    config["device"] = ctx.device.type
    inputs = {"heatmaps": entry["fingerprint"]}

    def compute(fingerprint: str, resume: bool):
        heatmaps = {layer: _checked_heatmaps(ws, layer, index) for layer in layers["layer"]}  # every input before any work
        scales = {layer: _scale(ws, layer, array, index) for layer, array in heatmaps.items()}
        out = ws.staging("cluster")
        groups = _groups(ctx, index)
        rows = []
        for layer, alias in progress(list(zip(layers["layer"], layers["alias"])), desc="cluster", unit="layer"):
            for group, members in groups.items():
                summary = _cluster_unit(ctx, out, layer, heatmaps[layer], members, scales[layer], index["image"].iloc[members].tolist(), group)
                rows.append({**summary, "alias": alias})
        summary = pd.DataFrame(rows)[["group", "layer", "alias", "n", "k", "wicd", "knee_method", "xlsx"]]
        best = summary.groupby("group", sort=False)["wicd"].idxmin()
        summary["selected"] = summary.index.isin(best.to_numpy())
        summary = _explained(summary, best)
        final = []
        for row in summary[summary["selected"]].itertuples():
            table = pd.read_csv(out.layer_clusters_csv(unit_name(row.group, row.layer)), dtype=str)
            table["layer"] = row.layer
            final.append(table)
        clusters = pd.concat(final).set_index("image").loc[index["image"]].reset_index()
        write_csv(out.summary_csv, summary)
        write_csv(out.method_clusters_csv(PAPER), clusters)
        if (summary["knee_method"].isin(["single-image", "too-few-images"])).any():
            echo("cluster: fewer than 4 error-inducing images in a group: one cluster, no k to choose")
        outputs = [ws.summary_csv, ws.cluster_dir(PAPER), *(ws.cluster_dir(unit_name(r.group, r.layer)) for r in summary.itertuples())]
        ws.commit(out, outputs)
        kept = {PAPER, *FEATURE_METHODS} | {unit_name(r.group, r.layer).split("/")[0] for r in summary.itertuples()}
        for stale in ws.cluster_dir(".").iterdir():  # layers or groups of an earlier run, not this one's
            if stale.name not in kept:
                remove(stale, ws.root)
        return outputs

    ran = run_step(ctx, "cluster", VERSION, config=config, inputs=inputs, compute=compute, force=force, staged=True)
    return ClusterOutcome(ran, read_summary(ws), read_table(ws.method_clusters_csv(PAPER), {"image": "str", "cluster": "str"},
                                                           fix=redo("cluster")))
