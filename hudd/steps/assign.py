"""Step 4, ``hudd assign``: pick the improvement-set images that resemble each root-cause cluster.

For every ImprovementSet image (labels unknown, so relevance explains the predicted class), the
raw heatmap of the selected layer (not normalised, as the paper) is computed batch by batch and
compared by blocked GEMM (:mod:`hudd.distance`) with the clustered error-inducing test heatmaps;
only its single-linkage distance to each cluster is kept (``UnsafeSet/single_linkage.npy``,
``(M, K)``). Quotas follow the paper's equation 7 (or split ``--budget``), and the ranked
assignment of Fig. 10 fills them (:mod:`hudd.assignment`).

Outputs: ``UnsafeSet/C<i>/`` (the selected images, hard links), ``UnsafeSet/unsafe.csv`` (image,
cluster, rank, distance, prediction, label when known) and ``UnsafeSet/labels.csv``, the sheet an
engineer fills in (image, cluster, label), pre-filled when the improvement set is labelled.
Classification models only for now.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..assignment import quotas, ranked_assignment, single_linkage
from ..data import ImageDataset, make_loader
from ..distance import distance_blocks
from ..errors import HuddError
from ..export.clusters import link_images
from ..lrp import Explainer
from ..predictions import check_finite
from ..progress import progress
from ..workspace import save_npy, write_csv
from .common import Context, run_step
from .heatmaps import channel_heatmap

__all__ = ["AssignOutcome", "run", "VERSION"]

VERSION = 1


@dataclass
class AssignOutcome:
    """The unsafe set (``unsafe.csv``) and the quota, size and selection of each cluster."""

    ran: bool
    unsafe: pd.DataFrame
    clusters: pd.DataFrame


def _clusters(ctx: Context) -> tuple[str, pd.DataFrame]:
    ws = ctx.workspace
    entry = ws.step_entry("cluster")
    if not entry or not entry.get("done") or not ws.clusters_csv.is_file():
        raise HuddError(f"{ws.clusters_csv}: no root-cause clusters yet; run `hudd cluster {ctx.case.root}` first")
    if ctx.model.spec.task != "classification":
        raise HuddError(f"{ctx.model_name}: hudd assign supports classification models so far; keypoint models are not supported yet")
    clusters = pd.read_csv(ws.clusters_csv)
    return str(clusters["layer"].iloc[0]), clusters


def run(ctx: Context, *, budget: int | None = None, force: bool = False) -> AssignOutcome:
    """Run (or skip, when current) the assignment; see the module docstring."""
    ws = ctx.workspace
    layer, clusters = _clusters(ctx)
    names = sorted(clusters["cluster"].unique(), key=lambda c: int(c.rsplit("C", 1)[1]))
    sizes = clusters["cluster"].value_counts().reindex(names).to_numpy()
    test = pd.read_csv(ws.test_result)
    if budget is not None and budget <= 0:
        raise HuddError(f"--budget {budget}: selects no image; give a positive number of images to label")
    quota = quotas(sizes, n_test=len(test), accuracy=float(test["correct"].mean()), sf=ctx.config.sf, budget=budget)
    if quota.sum() == 0:
        raise HuddError(f"sf == {ctx.config.sf}: every cluster's quota rounds to 0 ({len(test)} test images, "
                        f"{int((~test['correct']).sum())} errors); raise --sf or give --budget")
    listing = ctx.listing("ImprovementSet", unlabelled_ok=True)
    dataset = ImageDataset(ctx.case, listing, ctx.model.spec, model_name=ctx.model_name, cache=False)
    config = {"sf": ctx.config.sf, "budget": budget, "lrp_rule": ctx.config.lrp_rule, "device": ctx.device.type}
    inputs = {"cluster": ws.step_entry("cluster")["fingerprint"], "model": ctx.model_hash, "ImprovementSet": ctx.listing_hash(listing)}

    def compute(fingerprint: str, resume: bool):
        index = pd.read_csv(ws.heatmap_index)
        label_of = dict(zip(clusters["image"], clusters["cluster"]))
        cluster_of_row = np.array([names.index(label_of[image]) for image in index["image"]])
        order = np.argsort(cluster_of_row, kind="stable")
        starts = np.searchsorted(cluster_of_row[order], np.arange(len(names)))
        reference = np.asarray(np.load(ws.heatmap(layer), mmap_mode="r")[order], dtype=np.float64).reshape(len(order), -1)
        explainer = Explainer(ctx.model.module, composite=ctx.config.lrp_rule, layers=[layer], device=ctx.device)
        linkage = np.empty((len(listing), len(names)))
        predictions = np.empty(len(listing), np.int64)
        row = 0
        for images, _, idx in progress(make_loader(dataset, batch_size=ctx.config.batch_size), desc="assign", unit="batch"):
            outputs, relevance = explainer.relevance(images)
            check_finite(outputs, dataset, idx)
            heat = channel_heatmap(relevance[layer]).double().cpu().numpy().reshape(len(images), -1)
            for _, _, block in distance_blocks(heat, reference, device=ctx.device, block_rows=len(heat)):
                linkage[row:row + len(images)] = single_linkage(block, starts)
            predictions[row:row + len(images)] = outputs.argmax(1).cpu().numpy()
            row += len(images)
        chosen, rank, distance = ranked_assignment(linkage, quota)
        classes = np.array(ctx.model.spec.classes, dtype=object)
        table = pd.DataFrame({"image": list(listing.ids), "cluster": [names[c] if c >= 0 else "" for c in chosen],
                              "rank": rank, "distance": np.round(distance, 6), "prediction": classes[predictions]})
        table["label"] = classes[listing.targets] if listing.labelled else ""
        unsafe = table[chosen >= 0].sort_values(["cluster", "distance", "image"], key=_cluster_key).reset_index(drop=True)
        if ws.unsafe_dir.exists():
            shutil.rmtree(ws.unsafe_dir)
        save_npy(ws.single_linkage_npy, linkage)
        write_csv(ws.unsafe_csv, unsafe)
        write_csv(ws.labels_csv, unsafe[["image", "cluster", "label"]])
        for name in names:
            link_images(ctx.case.datasets, unsafe.loc[unsafe["cluster"] == name, "image"], ws.unsafe_cluster_dir(name))
        return [ws.unsafe_dir]

    ran = run_step(ctx, "assign", VERSION, config=config, inputs=inputs, compute=compute, force=force)
    unsafe = pd.read_csv(ws.unsafe_csv, keep_default_na=False)
    selected = unsafe["cluster"].value_counts().reindex(names, fill_value=0).to_numpy()
    return AssignOutcome(ran, unsafe, pd.DataFrame({"cluster": names, "size": sizes, "quota": quota, "selected": selected}))


def _cluster_key(column: pd.Series) -> pd.Series:
    """Sort C2 before C10."""
    return column.str.rsplit("C", n=1).str[1].astype(int) if column.name == "cluster" else column
