"""How well root-cause clusters match the causes a simulator injected (the paper's RQ1, scored).

Ground truth is ``DataSets/TestSet/params.csv``: one row per image with its simulator parameters
and the injected ``cause`` (``none`` for nominal images). For each cluster:

- **dominant cause** and **purity**: the most frequent cause among its images and its share;
- **RR** per parameter, the paper's variance ratio ``1 - var(cluster) / var(all test images)``:
  near 1 when the cluster's images agree on that parameter (it characterises the cluster), near 0
  or below when they vary as much as the whole test set. Parameters named ``*_angle`` are angles in
  degrees and use the circular variance ``1 - |mean(exp(i theta))|``.

Over all clusters: **purity** = images of their cluster's dominant cause / all clustered images
(weighted purity); **coverage** = injected causes (other than ``none``, among the clustered images)
that dominate at least one cluster of at least :data:`MIN_COVERING_SIZE` images with purity at
least :data:`MIN_COVERING_PURITY`. A singleton is trivially pure, so it does not count as finding
a cause; nor does the ``noise`` group of a density-based clustering (points it left unclustered).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..cluster.clustering import cluster_order

__all__ = ["Evaluation", "evaluate_clusters", "variance_ratio", "parameter_columns", "is_circular",
           "MIN_COVERING_SIZE", "MIN_COVERING_PURITY", "NOISE"]

MIN_COVERING_SIZE = 3
MIN_COVERING_PURITY = 0.5
NOMINAL = "none"
NOISE = "noise"


def is_circular(parameter: str) -> bool:
    """Angles in degrees (``*_angle``) wrap around; their variance is circular."""
    return parameter.endswith("_angle")


def _variance(values: np.ndarray, circular: bool) -> float:
    if len(values) == 0:
        return float("nan")
    if circular:
        return float(1.0 - np.abs(np.mean(np.exp(1j * np.deg2rad(values)))))
    return float(np.var(values))


def variance_ratio(cluster_values: np.ndarray, all_values: np.ndarray, *, circular: bool = False) -> float:
    """``1 - var(cluster) / var(all)``; NaN when the parameter does not vary over all images."""
    total = _variance(np.asarray(all_values, float), circular)
    if not total > 1e-12:
        return float("nan")
    return 1.0 - _variance(np.asarray(cluster_values, float), circular) / total


def parameter_columns(params: pd.DataFrame) -> list[str]:
    """The numeric simulator parameters of a params table (not image, cause or other text)."""
    return [c for c in params.columns if c not in ("image", "cause") and pd.api.types.is_numeric_dtype(params[c])]


@dataclass
class Evaluation:
    """Per-cluster scores and the totals ``hudd evaluate`` prints."""

    table: pd.DataFrame  # cluster, size, dominant_cause, purity, n_<cause>..., rr_<parameter>...
    purity: float
    covered: list[str]
    causes: list[str]
    described: pd.DataFrame | None = None  # the descriptions scored (hudd.evaluate.descriptions), when they could be

    @property
    def coverage(self) -> str:
        return f"{len(self.covered)}/{len(self.causes)}"

    @property
    def nominal_errors(self) -> int:
        """Error images without an injected cause (nominal images the model got wrong)."""
        column = f"n_{NOMINAL}"
        return int(self.table[column].sum()) if column in self.table else 0

    @property
    def purity_injected(self) -> float:
        """Weighted purity over the error images with an injected cause only: the same clusters, the nominal errors
        left out (they have no known cause to score); NaN without such images."""
        counts = self.table[[f"n_{cause}" for cause in self.causes]] if self.causes else pd.DataFrame()
        total = counts.to_numpy().sum() if len(counts.columns) else 0
        return float(counts.max(axis=1).sum() / total) if total else float("nan")

    def line(self) -> str:
        """The last line of ``hudd evaluate``: ``purity=<x.xx> coverage=<k>/<n> clusters=<m>``."""
        return f"purity={self.purity:.2f} coverage={self.coverage} clusters={len(self.table)}"


def evaluate_clusters(clusters: pd.DataFrame, params: pd.DataFrame) -> Evaluation:
    """Score ``clusters`` (image, cluster) against ``params`` (image, cause, parameters of every test image)."""
    truth = params.set_index("image")
    missing = clusters.loc[~clusters["image"].isin(truth.index), "image"]
    if len(missing):
        raise KeyError(missing.iloc[0])
    merged = clusters[["image", "cluster"]].join(truth, on="image")
    causes = sorted(c for c in merged["cause"].unique() if c != NOMINAL)
    all_causes = sorted(merged["cause"].unique())
    numeric = parameter_columns(params)
    rows = []
    for name in sorted(merged["cluster"].unique(), key=cluster_order):
        members = merged[merged["cluster"] == name]
        counts = members["cause"].value_counts()
        top = counts.max()
        dominant = sorted(counts.index[counts == top])[0]
        row = {"cluster": name, "size": len(members), "dominant_cause": dominant, "purity": top / len(members)}
        row.update({f"n_{cause}": int(counts.get(cause, 0)) for cause in all_causes})
        row.update({f"rr_{p}": variance_ratio(members[p].to_numpy(), truth[p].to_numpy(), circular=is_circular(p)) for p in numeric})
        rows.append(row)
    table = pd.DataFrame(rows)
    purity = float((table["purity"] * table["size"]).sum() / table["size"].sum()) if len(table) else float("nan")
    covering = table[(table["size"] >= MIN_COVERING_SIZE) & (table["purity"] >= MIN_COVERING_PURITY) & (table["cluster"] != NOISE)]
    covered = sorted(set(covering["dominant_cause"]) & set(causes))
    return Evaluation(table=table, purity=purity, covered=covered, causes=causes)
