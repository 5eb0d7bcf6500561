"""The report's unsafe-set section: per root-cause cluster the quota, the improvement images selected
for labelling, how many of them the model gets wrong, their folder and a few thumbnails.

The quotas are those ``hudd assign`` used (``UnsafeSet/quotas.csv``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .html import esc, image, link, note, not_run, section, table
from .inputs import ReportInputs
from ..cluster.clustering import cluster_order

__all__ = ["unsafe_table", "unsafe_section", "thumbnails", "THUMBNAILS"]

THUMBNAILS = 8


def unsafe_table(data: ReportInputs) -> pd.DataFrame | None:
    """cluster, size, [quota,] selected, [misclassified,] folder (a link); None before ``hudd assign``."""
    if data.unsafe is None or data.clusters is None:
        return None
    unsafe = data.unsafe
    names = sorted(data.clusters["cluster"].unique(), key=cluster_order)
    sizes = data.clusters["cluster"].value_counts().reindex(names).to_numpy()
    frame = pd.DataFrame({"cluster": names, "size": sizes})
    if data.quotas is not None:
        frame["quota"] = data.quotas.set_index("cluster")["quota"].reindex(names).to_numpy()
    frame["selected"] = unsafe["cluster"].value_counts().reindex(names, fill_value=0).to_numpy()
    if {"label", "prediction"} <= set(unsafe.columns) and (unsafe["label"].astype(str).str.strip() != "").all():
        wrong = unsafe[unsafe["label"].astype(str) != unsafe["prediction"].astype(str)]
        frame["misclassified"] = wrong["cluster"].value_counts().reindex(names, fill_value=0).to_numpy()
    frame["folder"] = [link(data.relative(data.workspace.unsafe_cluster_dir(n)) + "/", f"UnsafeSet/{n}/") for n in names]
    return frame


def _file(data: ReportInputs, cluster: str, image_id: str) -> Path:
    """The selected image's link in UnsafeSet/<cluster>/ (named as hudd.export.clusters.link_images does), else the original."""
    linked = data.workspace.unsafe_cluster_dir(cluster) / image_id.split("/", 1)[-1].replace("/", "-")
    return linked if linked.is_file() else data.case.datasets / image_id


def thumbnails(data: ReportInputs, cluster: str, limit: int = THUMBNAILS) -> str:
    """The ``limit`` selected images closest to ``cluster``, inlined, with a link to the rest."""
    if data.unsafe is None:
        return ""
    chosen = data.unsafe[data.unsafe["cluster"] == cluster]
    folder = link(data.relative(data.workspace.unsafe_cluster_dir(cluster)) + "/", f"UnsafeSet/{cluster}/")
    if not len(chosen):
        return f"<p>Unsafe set: no improvement image selected for {esc(cluster)}.</p>"
    pictures = "".join(image(_file(data, cluster, i), i, css_class="thumb") for i in chosen["image"].head(limit))
    shown = min(limit, len(chosen))
    return (f"<p>Unsafe set: {len(chosen):,} improvement images selected for labelling; the {shown} closest "
            f"(all in {folder}):</p><div>{pictures}</div>")


def unsafe_section(data: ReportInputs) -> str:
    """Counts and quotas per cluster, with links to the image folders and to labels.csv."""
    title = "Unsafe set"
    frame = unsafe_table(data)
    if frame is None:
        return section("unsafe", title, not_run(data.first_missing("test", "heatmaps", "cluster", "assign")))
    total = int(frame["selected"].sum())
    labels = link(data.relative(data.workspace.labels_csv), "UnsafeSet/labels.csv")
    body = [f'<p class="headline"><b>{total:,}</b> improvement images selected for labelling; '
            f"label them in {labels}, then run <code>{esc(data.command('retrain'))}</code>.</p>"]
    if "quota" in frame.columns:
        body.append(note("quota: equation 7 (sf x test images x error rate, split in proportion to the cluster sizes), "
                         "or hudd assign's --budget split the same way"))
    body.append(table(frame, html_columns=["folder"], headers={"size": "cluster size"}))
    return section("unsafe", title, "\n".join(body))
