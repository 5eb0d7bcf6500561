"""Step 2 support, ``hudd export``: image folders, GIFs and contact sheets of the root-cause clusters.

Exports the selected layer of each group (``--export all``: every layer) with
:func:`hudd.export.clusters.export_unit`, and links the selected layer's folder to ``HUDD/<layer>/``.
"""

from __future__ import annotations

import pandas as pd

from ..core.errors import HuddError
from ..export.clusters import export_unit, link_tree
from ..core.progress import progress
from ..core.files import file_hash
from ..workspace.readers import check_images, read_table, redo
from ..cluster.naming import unit_name
from ..workspace.tables import read_summary
from .common import Context, describe_images, image_keypoints, run_step

__all__ = ["run", "VERSION"]

VERSION = 2  # 2: keypoints drawn on the GIFs and contact sheets of keypoint models


def run(ctx: Context, *, force: bool = False) -> list[str]:
    """Run (or skip) the export; returns the exported units (``layer`` or ``group/layer``)."""
    ws = ctx.workspace
    entry = ws.step_entry("cluster")
    if not entry or not entry.get("done") or not ws.summary_csv.is_file():
        raise HuddError(f"{ws.summary_csv}: no finished clustering; run `hudd cluster {ctx.case.root}` first")
    summary = read_summary(ws)
    chosen = summary if ctx.config.export == "all" else summary[summary["selected"]]
    units = [(unit_name(r.group, r.layer), bool(r.selected)) for r in chosen.itertuples()]
    describe = describe_images(ctx)
    keypoints = image_keypoints(ctx)

    def compute(fingerprint: str, resume: bool):
        tables = {unit: _checked_clusters(ctx, unit) for unit, _ in units}  # every input before any work
        out = ws.staging("export")
        written = []
        for unit, _ in progress(units, desc="export", unit="layer"):
            written += export_unit(out, unit, ctx.case.datasets, tables[unit], describe, keypoints)
        written = [ws.root / path.relative_to(out.root) for path in written]
        ws.commit(out, written)
        best = [ws.best_layer_dir(unit) for unit, selected in units if selected]
        out = ws.staging("export")
        for unit, selected in units:
            if selected:
                link_tree(ws.cluster_dir(unit), out.best_layer_dir(unit))
        ws.commit(out, best)
        return written + best

    run_step(ctx, "export", VERSION, config={"export": ctx.config.export},
             inputs={"cluster": entry["fingerprint"], "testResult": file_hash(ws.test_result)}, compute=compute, force=force,
             staged=True)
    return [unit for unit, _ in units]


def _checked_clusters(ctx: Context, unit: str) -> pd.DataFrame:
    """The clusters of ``unit`` (image, cluster); a HuddError when one of their images is gone."""
    path = ctx.workspace.layer_clusters_csv(unit)
    clusters = read_table(path, {"image": "str", "cluster": "str"}, fix=redo("cluster"))
    check_images(path, clusters["image"], ctx.case.datasets,
                 f"restore it, or rerun `hudd analyze {ctx.case.root} --force` to analyse the data as it is now")
    return clusters
