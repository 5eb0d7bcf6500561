"""``hudd evaluate``: score the root-cause clusters against the causes the simulator injected.

Reads ``clusters.csv`` and ``DataSets/TestSet/params.csv`` (which needs a ``cause`` column) and
writes ``evaluation.csv``: one row per cluster with its size, dominant cause, purity, the count of
each cause and the variance ratio RR of each parameter (see :mod:`hudd.evaluation`). Cheap, so it
always reruns.
"""

from __future__ import annotations

import pandas as pd

from ..data import read_params
from ..errors import HuddError
from ..evaluation import Evaluation, evaluate_clusters
from ..workspace import write_csv
from .common import Context

__all__ = ["run"]


def run(ctx: Context) -> Evaluation:
    """Evaluate the clusters of ``clusters.csv``; write and return the scores."""
    ws = ctx.workspace
    params_path = ctx.case.split_dir("TestSet") / "params.csv"
    params = read_params(ctx.case, "TestSet")
    if params is None or "cause" not in params.columns:
        raise HuddError(f"{params_path}: {'missing' if params is None else 'has no cause column'}; hudd evaluate needs the "
                        f"injected cause of every test image (hudd simulate writes it)")
    if not ws.clusters_csv.is_file():
        raise HuddError(f"{ws.clusters_csv}: missing; run `hudd analyze {ctx.case.root}` first")
    clusters = pd.read_csv(ws.clusters_csv)
    try:
        evaluation = evaluate_clusters(clusters, params)
    except KeyError as exc:
        raise HuddError(f"{params_path}: has no row for the clustered image {exc.args[0]}; regenerate it or rerun the analysis") from None
    write_csv(ws.evaluation_csv, evaluation.table)
    return evaluation
