"""``hudd evaluate``: score the root-cause clusters against the causes the simulator injected.

Reads the clusters of the workspace's active method (the last ``hudd cluster`` / ``hudd analyze``:
``clusters.csv`` for ``paper``, ``ClusterAnalysis/<method>/clusters.csv`` for a feature method) and
``DataSets/TestSet/params.csv`` (which needs a ``cause`` column) and writes ``evaluation.csv``: one row per cluster with its size, dominant cause, purity, the count of
each cause and the variance ratio RR of each parameter (see :mod:`hudd.evaluate.evaluation`). On a
case ``hudd simulate`` wrote, whose clusters ``hudd describe`` has described, it also scores the
descriptions (:mod:`hudd.evaluate.descriptions`): per cluster a cause dominates, whether they name
the parameter the cause changed (``names_parameter``) and the image property (``names_property``).

``--compare`` (:func:`compare`) scores every clustering the workspace holds side by side and writes
``clusterings.csv``: the paper's selected clusters (``paper``), each layer's (``paper-layer``), and
every feature method's (``ClusterAnalysis/<method>/``), with the wall time of the steps that made
them (from the manifest: heatmaps + cluster for the paper's, the method's step otherwise) and which
one is active. Cheap, so it always reruns.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt

import pandas as pd

from ..case.data import read_params
from ..core.errors import HuddError
from ..describe.describe import DESCRIPTION_COLUMNS
from ..evaluate.descriptions import score_descriptions
from ..evaluate.evaluation import NOISE, Evaluation, evaluate_clusters
from ..core.files import file_hash, write_csv
from ..sim.case import simulated_task
from ..sim.params import evidence
from ..methods import FEATURE_METHODS, PAPER
from ..workspace.readers import read_table, redo
from ..cluster.naming import unit_name
from ..workspace.tables import read_summary
from .common import Context

__all__ = ["run", "compare"]


def _ground_truth(ctx: Context) -> pd.DataFrame:
    params_path = ctx.case.split_dir("TestSet") / "params.csv"
    params = read_params(ctx.case, "TestSet")
    if params is None or "cause" not in params.columns:
        raise HuddError(f"{params_path}: {'missing' if params is None else 'has no cause column'}; hudd evaluate needs the "
                        f"injected cause of every test image (hudd simulate writes it)")
    return params


def _clusters(path) -> pd.DataFrame:
    return read_table(path, {"image": "str", "cluster": "str"}, fix="rerun the clustering that wrote it with --force")


def _score(ctx: Context, clusters: pd.DataFrame, params: pd.DataFrame) -> Evaluation:
    """``clusters`` (image, cluster) scored against the injected causes."""
    try:
        return evaluate_clusters(clusters, params)
    except KeyError as exc:
        raise HuddError(f"{ctx.case.split_dir('TestSet') / 'params.csv'}: has no row for the clustered image {exc.args[0]}; "
                        f"regenerate it or rerun the analysis") from None


def _described(ctx: Context, path, clusters: pd.DataFrame, params: pd.DataFrame) -> pd.DataFrame | None:
    """The workspace's descriptions of ``clusters`` (read from ``path``) scored against what each cause changed; None unless
    the case is simulated and ``hudd describe`` described these very clusters."""
    ws = ctx.workspace
    task = simulated_task(ctx.case.datasets)
    entry = ws.step_entry("describe") or {}
    if task is None or not entry.get("done") or (entry.get("inputs") or {}).get("clusters") != file_hash(path):
        return None
    fix = redo("describe")
    descriptions = read_table(ws.descriptions_csv, DESCRIPTION_COLUMNS, fix=fix, allow_empty=True, keep_default_na=False)
    properties = read_table(ws.properties_csv("TestSet"), {"image": "str"}, fix=fix).set_index("image")
    return score_descriptions(clusters, params, properties, evidence(task), descriptions=descriptions)


def run(ctx: Context) -> Evaluation:
    """Evaluate the clusters of the workspace's active method (and their descriptions); write and return the scores."""
    ws = ctx.workspace
    params = _ground_truth(ctx)
    path = ws.method_clusters_csv(ws.active_method()["name"])
    if not path.is_file():
        raise HuddError(f"{path}: missing; run `hudd analyze {ctx.case.root}` first")
    clusters = _clusters(path)
    evaluation = _score(ctx, clusters, params)
    described = _described(ctx, path, clusters, params)
    table = evaluation.table
    if described is not None:
        named = described.set_index("cluster")[["parameter_named", "property_named"]]
        table = table.join(named.rename(columns={"parameter_named": "names_parameter", "property_named": "names_property"}), on="cluster")
    write_csv(ws.evaluation_csv, table)
    return dataclasses.replace(evaluation, table=table, described=described)


def _seconds(ctx: Context, *steps: str) -> float:
    """Wall time the manifest records for ``steps`` (NaN when one is not done)."""
    total = 0.0
    for step in steps:
        entry = ctx.workspace.step_entry(step) or {}
        if not entry.get("done") or "started" not in entry or "finished" not in entry:
            return float("nan")
        started, finished = (_dt.datetime.fromisoformat(entry[key]) for key in ("started", "finished"))
        total += (finished - started).total_seconds()
    return total


def _row(method: str, unit: str, evaluation: Evaluation, seconds: float) -> dict:
    table = evaluation.table
    noise = int(table.loc[table["cluster"] == NOISE, "size"].sum())
    small = int(table.loc[(table["size"] < 3) & (table["cluster"] != NOISE), "size"].sum())
    return {"method": method, "unit": unit, "clusters": int((table["cluster"] != NOISE).sum()), "images": int(table["size"].sum()),
            "purity": round(evaluation.purity, 4), "coverage": evaluation.coverage, "covered": " ".join(evaluation.covered),
            "noise": noise, "in_small_clusters": small, "seconds": seconds}


def compare(ctx: Context) -> pd.DataFrame:
    """Score every clustering present (see the module docstring); write and return ``clusterings.csv``."""
    ws = ctx.workspace
    params = _ground_truth(ctx)
    rows = []
    if ws.method_clusters_csv(PAPER).is_file():
        paper_seconds = _seconds(ctx, "heatmaps", "cluster")
        rows.append(_row(PAPER, "selected", _score(ctx, _clusters(ws.method_clusters_csv(PAPER)), params), paper_seconds))
        summary = read_summary(ws)
        for layer in summary.itertuples():
            unit = unit_name(layer.group, layer.layer)
            rows.append(_row(f"{PAPER}-layer", f"{unit} ({layer.alias})", _score(ctx, _clusters(ws.layer_clusters_csv(unit)), params),
                             float("nan")))
    for method in FEATURE_METHODS:
        clusters = ws.layer_clusters_csv(method)
        if clusters.is_file():
            rows.append(_row(method, "selected", _score(ctx, _clusters(clusters), params), _seconds(ctx, method)))
    if not rows:
        raise HuddError(f"{ws.cluster_dir('.')}: no clustering to compare; run `hudd analyze {ctx.case.root}` first")
    table = pd.DataFrame(rows)
    table["active"] = (table["method"] == ws.active_method()["name"]) & (table["unit"] == "selected")
    write_csv(ws.clusterings_csv, table)
    return table
