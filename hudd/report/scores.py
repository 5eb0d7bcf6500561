"""Clusters scored against TestSet/params.csv: RR per simulator parameter, and dominant cause and purity.

With a ``cause`` column this is :func:`hudd.evaluate.evaluation.evaluate_clusters`; without one, RR alone,
from :func:`hudd.evaluate.evaluation.variance_ratio` per parameter (circular for angles), the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ..cluster.clustering import cluster_order
from ..evaluate.evaluation import Evaluation, evaluate_clusters, is_circular, parameter_columns, variance_ratio

__all__ = ["Scores", "score_clusters"]


@dataclass
class Scores:
    """``table``: cluster, size, rr_<parameter>... (and dominant_cause, purity, n_<cause>... with causes)."""

    table: pd.DataFrame
    parameters: list[str]
    evaluation: Evaluation | None

    def rr(self, cluster: str) -> dict[str, float]:
        """RR of each parameter for one cluster."""
        row = self.table.set_index("cluster").loc[cluster]
        return {p: float(row[f"rr_{p}"]) for p in self.parameters}


def score_clusters(clusters: pd.DataFrame, params: pd.DataFrame) -> Scores:
    """Score ``clusters`` (image, cluster) against ``params`` (image, parameters[, cause]).

    Raises KeyError naming an image of ``clusters`` that params.csv lacks.
    """
    parameters = parameter_columns(params)
    if "cause" in params.columns:
        evaluation = evaluate_clusters(clusters, params.astype({"cause": str}))
        return Scores(evaluation.table, parameters, evaluation)
    truth = params.set_index("image")
    missing = clusters.loc[~clusters["image"].isin(truth.index), "image"]
    if len(missing):
        raise KeyError(missing.iloc[0])
    merged = clusters[["image", "cluster"]].join(truth[parameters], on="image")
    rows = []
    for name in sorted(merged["cluster"].unique(), key=cluster_order):
        members = merged[merged["cluster"] == name]
        row = {"cluster": name, "size": len(members)}
        row.update({f"rr_{p}": variance_ratio(members[p].to_numpy(), truth[p].to_numpy(), circular=is_circular(p)) for p in parameters})
        rows.append(row)
    return Scores(pd.DataFrame(rows, columns=["cluster", "size", *[f"rr_{p}" for p in parameters]]), parameters, None)
