"""The retraining methods compared in RQ2, and the comparison table of their repeated runs.

HUDD against the paper's baselines B1 and B2, and Model Doctor's methods against HUDD when they ran
(:mod:`hudd.retrain.stats` for the effect sizes and tests).
"""

from __future__ import annotations

import pandas as pd

from .stats import a12, mann_whitney_p

__all__ = ["BASELINES", "DOCTOR_METHODS", "compare"]

BASELINES = ("B1", "B2")
DOCTOR_METHODS = ("doctor", "hudd+doctor")


def compare(metrics: pd.DataFrame, column: str = "accuracy") -> pd.DataFrame:
    """method, runs, mean, sd, gain over the original; A12 and Mann-Whitney p of each retraining method
    (HUDD, and Model Doctor's when present) against B1 and B2, and of Model Doctor's against HUDD
    (columns ``A12_vs_hudd``, ``p_vs_hudd``, only when a Model Doctor method ran)."""
    original = float(metrics.loc[metrics["method"] == "original", column].mean())
    methods = set(metrics["method"])
    references = list(BASELINES) + (["hudd"] if methods & set(DOCTOR_METHODS) and "hudd" in methods else [])
    rows = []
    for method, values in metrics.groupby("method", sort=False)[column]:
        row = {"method": method, "runs": len(values), "mean": values.mean(), "sd": values.std(ddof=1) if len(values) > 1 else 0.0,
               "gain": values.mean() - original}
        for reference in references:
            other = metrics.loc[metrics["method"] == reference, column].to_numpy()
            compared = len(other) and (method in DOCTOR_METHODS if reference == "hudd" else method not in ("original", *BASELINES))
            row[f"A12_vs_{reference}"] = a12(values.to_numpy(), other) if compared else float("nan")
            row[f"p_vs_{reference}"] = mann_whitney_p(values.to_numpy(), other) if compared else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)
