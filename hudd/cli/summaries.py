"""Plain-text summaries for the terminal (what the CLI prints after a command)."""

from __future__ import annotations

import pandas as pd

from ..cluster.clustering import cluster_order
from ..core.text import format_table
from ..methods import PAPER
from ..models.predictions import accuracy_by, hazard_ratio

__all__ = ["results_summary", "test_summary", "cluster_summary", "retrain_summary", "evaluation_summary"]


def _keypoint_line(results: pd.DataFrame, name: str, error_px: float) -> str:
    share = float(results["correct"].mean()) if len(results) else float("nan")
    return f"{name} mean keypoint error {results['error_px'].mean():.2f} px; {share:.1%} of the images within {error_px:g} px"


def results_summary(results: pd.DataFrame, task: str, *, error_px: float = 4.0) -> str:
    """Overall accuracy (or mean keypoint error and the share within ``error_px``), per class, and per injected cause when known."""
    lines = []
    accuracy = float(results["correct"].mean()) if len(results) else float("nan")
    if task == "classification":
        lines.append(f"test accuracy {accuracy:.4f} ({int(results['correct'].sum())}/{len(results)})")
        lines.append(format_table(accuracy_by(results, "label")[["label", "n", "accuracy"]]))
    else:
        lines.append(_keypoint_line(results, "test", error_px))
    if "cause" in results.columns:
        lines.append(format_table(accuracy_by(results, "cause")[["cause", "n", "error_rate"]]))
        rate_h, rate_n, ratio = hazard_ratio(results)
        lines.append(f"error rate with a hazard {rate_h:.4f}, without {rate_n:.4f}: ratio {ratio:.1f}")
    return "\n".join(lines)


def test_summary(train: pd.DataFrame, test: pd.DataFrame, task: str, *, error_px: float = 4.0) -> str:
    """Accuracy (keypoints: mean error) on both sets, per class on the test set, and the number of error-inducing test images."""
    if not len(train):
        lines = ["training set empty"]
    elif task == "classification":
        lines = [f"training accuracy {train['correct'].mean():.4f} ({int(train['correct'].sum())}/{len(train)})"]
    else:
        lines = [_keypoint_line(train, "training", error_px)]
    lines.append(results_summary(test, task, error_px=error_px))
    lines.append(f"error-inducing test images: {int((~test['correct'].astype(bool)).sum())}")
    return "\n".join(lines)


def cluster_summary(summary: pd.DataFrame, clusters: pd.DataFrame, workspace) -> str:
    """Per layer n, k, WICD and knee method; the selected layer(s); cluster sizes; where to look."""
    shown = summary[["group", "layer", "alias", "n", "k", "wicd", "knee_method", "selected"]] if summary["group"].astype(bool).any() \
        else summary[["layer", "alias", "n", "k", "wicd", "knee_method", "selected"]]
    lines = [format_table(shown, floats="{:.4f}")]
    for row in summary[summary["selected"]].itertuples():
        prefix = f"{row.group}: " if row.group else ""
        members = clusters[clusters["layer"] == row.layer]
        if row.group:
            members = members[members["cluster"].str.startswith(f"{row.group}-")]
        sizes = members["cluster"].value_counts()
        ordered = sorted(sizes.index, key=cluster_order)
        lines.append(f"{prefix}selected layer {row.layer} ({row.alias}), k = {row.k}: " + ", ".join(f"{c} {sizes[c]}" for c in ordered))
        if "why" in summary:
            lines.append(f"{prefix}why: {row.why}")
    lines.append(f"clusters: {workspace.method_clusters_csv(PAPER)}; images, GIFs and contact sheets in {workspace.root / 'ClusterAnalysis'}")
    return "\n".join(lines)


def feature_summary(summary: pd.DataFrame, clusters: pd.DataFrame, folder) -> str:
    """A feature method's row of ``method.csv`` (and its note), the cluster sizes, where to look."""
    row = summary.iloc[0]
    words = [c for c in ("note", "extractor_name", "representation", "why") if c in summary]
    lines = [format_table(summary.drop(columns=words), floats="{:.2f}")]
    if row["note"]:
        lines.append(f"note: {row['note']}")
    if "why" in summary:
        lines += [f"representation: {row['representation']}", f"why: {row['why']}"]
    sizes = clusters["cluster"].value_counts()
    lines.append(f"{row['method']}: k = {row['k']} ({row['params']}): "
                 + ", ".join(f"{name} {sizes[name]}" for name in sorted(sizes.index, key=cluster_order)))
    lines.append(f"clusters, GIFs and contact sheets in {folder}")
    return "\n".join(lines)


def clustering_summary(clustering, workspace, requested: str) -> str:
    """What ``hudd cluster`` / ``hudd analyze`` clustered: the paper's layers, the feature method, the active one."""
    lines = []
    if clustering.paper is not None:
        lines.append(cluster_summary(clustering.paper.summary, clustering.paper.clusters, workspace))
    if clustering.feature is not None:
        lines.append(feature_summary(clustering.feature.summary, clustering.feature.clusters, workspace.cluster_dir(clustering.method)))
    if clustering.active == clustering.method:
        lines.append(f"active method: {clustering.method}" + (f" (for {requested})" if requested != clustering.method else "")
                     + f": its clusters are in {workspace.clusters_csv}; hudd assign, evaluate and the report use them")
    else:
        lines.append(f"active method: {clustering.active} (unchanged): hudd assign, evaluate and the report use its clusters")
    lines += ["what each cluster's images have in common (HUDD/findings.csv):", *clustering.described.findings["sentence"]]
    return "\n".join(lines)


def retrain_summary(retrained) -> str:
    """Test accuracy per method (mean, sd, gain over the original, A12 and p of HUDD vs B1/B2), and on hazard images,
    from a :class:`hudd.steps.retrain.RetrainOutcome`."""
    lines = ["test accuracy", format_table(retrained.comparison, floats="{:.4f}")]
    if retrained.hazard_comparison is not None:
        lines += ["accuracy on images with an injected hazard", format_table(retrained.hazard_comparison, floats="{:.4f}")]
    return "\n".join(lines)


def described_line(scores: pd.DataFrame) -> str:
    """``descriptions: the changed parameter named for 9 of 10 cause clusters, the changed image property for 7 of 8``
    (scores as :func:`hudd.evaluate.descriptions.score_descriptions` returns them)."""
    pixels = scores["property_named"].dropna().astype(bool)
    return (f"descriptions: the changed parameter named for {int(scores['parameter_named'].sum())} of {len(scores)} cause "
            f"clusters, the changed image property for {int(pixels.sum())} of {len(pixels)}")


def evaluation_summary(evaluation) -> str:
    """Per cluster: size, dominant cause, purity and the two parameters it agrees on most (highest RR)."""
    table = evaluation.table
    rr = table[[c for c in table.columns if c.startswith("rr_")]]
    top = [", ".join(f"{name[3:]} {value:.2f}" for name, value in row.dropna().sort_values(ascending=False).head(2).items())
           for _, row in rr.iterrows()]
    shown = table[["cluster", "size", "dominant_cause", "purity"]].assign(highest_rr=top)
    causes = ", ".join(evaluation.causes) or "none"
    covered = ", ".join(evaluation.covered) or "none"
    lines = [format_table(shown, floats="{:.2f}"), f"injected causes among the errors: {causes}; covered: {covered}"]
    if evaluation.nominal_errors and evaluation.causes:
        lines.append(f"{evaluation.nominal_errors} errors on nominal images (no injected cause); purity over the others: "
                     f"{evaluation.purity_injected:.2f}")
    if evaluation.described is not None:
        lines.append(described_line(evaluation.described))
    return "\n".join(lines)
