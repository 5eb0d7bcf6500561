"""The report's retraining section: HUDD against the paper's baselines (RQ2), from Retrain/metrics.csv."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..retrain.comparison import compare
from .html import code, esc, note, not_run, section, table
from .inputs import ReportInputs
from ..cluster.clustering import cluster_order

__all__ = ["retrain_section", "mean_sd_table"]

METHODS = {
    "original": "the model before retraining",
    "hudd": "HUDD: training set + the balanced, labelled unsafe set",
    "B1": "baseline B1: as many random improvement images, those the model gets wrong, bootstrapped to the same size",
    "B2": "baseline B2: as many random improvement images, bootstrapped to the same size",
    "doctor": "Model Doctor: training set only, with the gradient constraints on the deep layers (space-wise too when masks exist)",
    "hudd+doctor": "HUDD + Model Doctor: training set + the balanced unsafe set, with the constraints",
}
_HEADERS = {"mean": "mean", "sd": "sd", "gain": "gain over original", "A12_vs_B1": "A12 vs B1", "p_vs_B1": "p vs B1",
            "A12_vs_B2": "A12 vs B2", "p_vs_B2": "p vs B2", "A12_vs_hudd": "A12 vs hudd", "p_vs_hudd": "p vs hudd"}


def _measure_key(column: str) -> tuple:
    """accuracy and summary measures first, then class_*, cluster_* (C2 before C10), cause_*, n_extra last."""
    kind = column.split("_", 1)[0] if column.startswith(("class_", "cluster_", "cause_")) else ""
    order = {"": 0, "class": 1, "cluster": 2, "cause": 3}[kind]
    return (column == "n_extra", order, cluster_order(column.split("_", 1)[1]) if kind == "cluster" else (), column)


def mean_sd_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per measured column (accuracy, per class, per cluster, on hazards, per cause), one
    column per method: ``mean ± sd`` over its runs (the mean alone for one run)."""
    methods = list(dict.fromkeys(metrics["method"]))
    measured = sorted((c for c in metrics.columns if c not in ("run", "method", "seed") and pd.api.types.is_numeric_dtype(metrics[c])),
                      key=_measure_key)
    rows = []
    for column in measured:
        row = {"measure": column}
        for method in methods:
            values = metrics.loc[metrics["method"] == method, column].dropna()
            if not len(values):
                row[method] = "\u2013"
            elif column == "n_extra":
                row[method] = f"{values.mean():,.0f}"
            elif len(values) > 1:
                row[method] = f"{values.mean():.4f} \u00b1 {values.std(ddof=1):.4f}"
            else:
                row[method] = f"{values.mean():.4f}"
        rows.append(row)
    return pd.DataFrame(rows, columns=["measure", *methods])


def _comparison(frame: pd.DataFrame, *, described: bool = False) -> str:
    frame = frame.copy()
    if described:
        frame.insert(1, "what", [METHODS.get(str(m), "") for m in frame["method"]])
    return table(frame, headers=_HEADERS, highlight=(frame["method"] == "hudd").tolist())


def retrain_section(data: ReportInputs) -> str:
    """Test accuracy per method with A12 and p of HUDD against B1 and B2; mean ± sd of every measure."""
    title = "Retraining"
    metrics = data.metrics
    if metrics is None:
        return section("retrain", title, not_run(data.first_missing("test", "heatmaps", "cluster", "assign", "retrain")))
    comparison = data.comparison if data.comparison is not None else compare(metrics)
    runs = int(metrics.loc[metrics["method"] != "original", "run"].max()) if (metrics["method"] != "original").any() else 0
    body = [f"<p>Each method fine-tunes a copy of the original model, {runs} run{'s' if runs != 1 else ''} with seeds "
            f"{esc(', '.join(str(s) for s in sorted(metrics.loc[metrics['seed'] >= 0, 'seed'].unique())))}; "
            f"the retrained HUDD model is {code(f'DNNModels/{Path(data.model_file).stem}-hudd.pt')}.</p>",
            "<h3>Test accuracy</h3>", _comparison(comparison, described=True),
            note("A12 (Vargha-Delaney): the probability that a HUDD run beats a baseline run; 0.5 is no difference, "
                 ">= 0.64 a medium and >= 0.71 a large effect. p: two-sided Mann-Whitney U test (needs several runs).")]
    if "hazard" in metrics.columns:
        body += ["<h3>Accuracy on test images with an injected hazard</h3>", _comparison(compare(metrics, "hazard"))]
    body += ["<h3>Every measure, mean \u00b1 sd over the runs</h3>",
             note("class_*: accuracy per class; cluster_*: on the test images of each root-cause cluster (all wrong before "
                  "retraining); cause_*: per injected cause; n_extra: images added to the training set."),
             table(frame := mean_sd_table(metrics), right=frame.columns[1:])]
    return section("retrain", title, "\n".join(body))
