"""Step 2 support, ``hudd export``: image folders, GIFs and contact sheets of the root-cause clusters.

Exports the selected layer of each group (``--export all``: every layer) with
:func:`hudd.export.clusters.export_unit`, and links the selected layer's folder to ``HUDD/<layer>/``.
"""

from __future__ import annotations

import pandas as pd

from ..errors import HuddError
from ..export.clusters import export_unit, link_tree
from ..progress import progress
from ..workspace import file_hash
from .cluster import unit_name
from .common import Context, run_step

__all__ = ["run", "VERSION", "describe_images"]

VERSION = 1


def describe_images(ctx: Context) -> pd.Series:
    """Image -> class (or worst keypoint), from ``testResult.csv``: the titles of the contact sheets."""
    results = pd.read_csv(ctx.workspace.test_result)
    if ctx.model.spec.task == "keypoints":
        return results.set_index("image")["worst_keypoint"].map(lambda k: ctx.model.spec.keypoints[int(k)])
    return results.set_index("image")["label"]


def run(ctx: Context, *, force: bool = False) -> list[str]:
    """Run (or skip) the export; returns the exported units (``layer`` or ``group/layer``)."""
    ws = ctx.workspace
    entry = ws.step_entry("cluster")
    if not entry or not entry.get("done") or not ws.summary_csv.is_file():
        raise HuddError(f"{ws.summary_csv}: no finished clustering; run `hudd cluster {ctx.case.root}` first")
    summary = pd.read_csv(ws.summary_csv, keep_default_na=False)
    chosen = summary if ctx.config.export == "all" else summary[summary["selected"]]
    units = [(unit_name(r.group, r.layer), bool(r.selected)) for r in chosen.itertuples()]
    describe = describe_images(ctx)

    def compute(fingerprint: str, resume: bool):
        written = []
        for unit, selected in progress(units, desc="export", unit="layer"):
            clusters = pd.read_csv(ws.layer_clusters_csv(unit))
            written += export_unit(ws, unit, ctx.case.datasets, clusters, describe)
            if selected:
                link_tree(ws.cluster_dir(unit), ws.best_layer_dir(unit))
                written.append(ws.best_layer_dir(unit))
        return written

    run_step(ctx, "export", VERSION, config={"export": ctx.config.export},
             inputs={"cluster": entry["fingerprint"], "testResult": file_hash(ws.test_result)}, compute=compute, force=force)
    return [unit for unit, _ in units]
