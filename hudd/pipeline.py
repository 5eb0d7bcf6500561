"""The two pipelines an engineer runs: ``hudd analyze`` and ``hudd retrain``, and the clustering between them.

- analyze = test -> cluster (by the method asked for; :func:`cluster`) -> report;
- cluster, ``hudd`` (the default, :mod:`hudd.methods`) = the primary feature method
  (``joint``) and, for the heatmap view beside it, heatmaps -> the paper's cluster -> export;
  ``paper`` = heatmaps -> cluster -> export; another feature method = that method alone. Each
  method's clusters are in ``ClusterAnalysis/<method>/clusters.csv``. One of them is the
  workspace's *active* method (:func:`activate`): its clusters are copied to ``HUDD/clusters.csv``
  and assign, evaluate, describe and the report read them. ``analyze`` and the default method make
  their method active; another ``hudd cluster --method`` run to compare does so only when asked
  (``--activate``), when no method is active yet, or when it is the active one (its clusters renewed);
- retrain = assign -> (labels needed?) -> [doctor, with ``--treatment doctor``] -> retrain -> report.

Each step decides for itself whether it is current (:func:`hudd.steps.common.run_step`): its
fingerprint holds the config keys it reads, its input files' hashes and the fingerprint of the step
before it, so a changed model, data set listing or config value reruns that step and the ones after
it, and nothing else. A run killed at any point resumes: finished steps are skipped, the heatmaps
continue from their last flushed batch, other steps restart cleanly (their outputs are only renamed
into place when written in full). ``force`` reruns every step of the pipeline.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .core.errors import HuddError
from .core.files import write_csv
from .case.labels import LABELS_FIX, read_labels
from .methods import HUDD, PAPER, resolve
from .core.progress import echo, note
from .workspace.readers import read_table, redo
from .steps import assign as assign_step
from .steps import cluster as cluster_step
from .steps import describe as describe_step
from .steps import doctor as doctor_step
from .steps import export as export_step
from .steps import feature_cluster
from .steps import heatmaps as heatmaps_step
from .steps import report as report_step
from .steps import retrain as retrain_step
from .steps import test as test_step
from .steps.common import Context

__all__ = ["AnalyzeOutcome", "ClusterPipelineOutcome", "RetrainPipelineOutcome", "analyze", "activate", "cluster", "retrain"]


@dataclass
class ClusterPipelineOutcome:
    """The clusterings made: the method that ran, the paper's outcome and the feature method's (None when not run),
    the workspace's active method after it and the description of its clusters."""

    method: str
    note: str
    paper: cluster_step.ClusterOutcome | None
    feature: feature_cluster.FeatureOutcome | None
    described: describe_step.DescribeOutcome
    active: str

    @property
    def clusters(self) -> pd.DataFrame:
        """The clusters of the method that ran (image, cluster, ...)."""
        return self.paper.clusters if self.method == PAPER else self.feature.clusters


@dataclass
class AnalyzeOutcome:
    """What ``hudd analyze`` produced."""

    tested: test_step.TestOutcome
    clustering: ClusterPipelineOutcome
    report: Path


@dataclass
class RetrainPipelineOutcome:
    """What ``hudd retrain`` produced."""

    unsafe: assign_step.AssignOutcome
    retrained: retrain_step.RetrainOutcome
    report: Path


def activate(ctx: Context, name: str, *, requested: str, note: str = "") -> None:
    """Make ``name`` the active method: its clusters copied to ``HUDD/clusters.csv`` (image, cluster, method), the manifest says so."""
    ws = ctx.workspace
    path = ws.method_clusters_csv(name)
    clusters = read_table(path, {"image": "str", "cluster": "str"}, fix=redo(f"cluster --method {name}"))
    write_csv(ws.clusters_csv, clusters[["image", "cluster"]].assign(method=name))
    ws.set_active_method(name, requested=requested, note=note)


def cluster(ctx: Context, method: str = HUDD, *, heatmaps: bool = True, force: bool = False,
            activate_it: bool | None = None) -> ClusterPipelineOutcome:
    """Cluster the error-inducing images with ``method`` and describe the active method's clusters.

    ``activate_it``: make ``method`` the active one (True), leave the active one (False), or (None)
    only when it is the default ``hudd``, no method is active yet or it is the active one.

    ``hudd`` runs :data:`hudd.methods.PRIMARY` (or the paper's method without the pretrained extra,
    with a note) and the paper's clustering as the second view: with ``heatmaps`` the heatmaps are
    computed (or found current), without, the view is added only when they exist; a model that LRP
    cannot explain (a layer without a rule) gets a note instead of the view. ``paper``
    computes the heatmaps with ``heatmaps``; without, they must exist (``hudd cluster``). A feature method takes its
    options (extractor, weights, clusterer, reducer) from the config.
    """
    name, fallback_note = resolve(method, ctx.model.spec.task)
    if fallback_note:
        note(fallback_note)
    feature = feature_cluster.run(ctx, name, force=force) if name != PAPER else None
    paper = None
    heatmaps_done = bool((ctx.workspace.step_entry("heatmaps") or {}).get("done"))
    if name == PAPER or (method == HUDD and (heatmaps or heatmaps_done)):
        try:
            if heatmaps:
                heatmaps_step.run(ctx, force=force)
        except heatmaps_step.UnexplainableModel as exc:
            if name == PAPER:
                raise
            note(f"the paper's heatmap view is left out: {exc}")
        else:
            paper = cluster_step.run(ctx, force=force)
            export_step.run(ctx, force=force)
    ws = ctx.workspace
    if activate_it is None:
        activate_it = method == HUDD or not ws.has_active_method() or ws.active_method()["name"] == name
    if activate_it:
        activate(ctx, name, requested=method, note=fallback_note)
    else:
        echo(f"{name}: clusters in {ws.cluster_dir(name)}; the active method stays {ws.active_method()['name']} "
             f"(make {name} active with `hudd cluster {ctx.case.root} --method {name} --activate`)")
    return ClusterPipelineOutcome(name, fallback_note, paper, feature, describe_step.run(ctx, force=force), ws.active_method()["name"])


def analyze(ctx: Context, *, method: str = HUDD, force: bool = False) -> AnalyzeOutcome:
    """Test the model, cluster its errors with ``method`` (export and describe them), write the report."""
    tested = test_step.run(ctx, force=force)
    clustering = cluster(ctx, method, force=force, activate_it=True)
    return AnalyzeOutcome(tested, clustering, report_step.run(ctx))


def unlabelled_count(ctx: Context) -> int:
    """Rows of ``labels.csv`` whose label columns are all blank (images still to be labelled).

    Zero when the sheet lacks its label columns: :func:`hudd.steps.retrain.read_labels` names those.
    """
    labels = read_labels(ctx.workspace.labels_csv, fix=LABELS_FIX)
    values = labels.drop(columns=[c for c in ("image", "cluster") if c in labels.columns])
    if values.columns.empty:
        return 0
    return int((values.apply(lambda column: column.str.strip()) == "").all(axis=1).sum())


def _previous_selection(ctx: Context, method: str | None, budget: int | None) -> tuple[Context, str | None, int | None]:
    """The clustering method, ``sf`` and ``--budget`` the last finished ``hudd assign`` ran with, so that
    ``hudd retrain`` keeps the unsafe set an engineer labelled instead of selecting anew with the defaults."""
    entry = ctx.workspace.step_entry("assign") or {}
    previous = entry.get("config") or {}
    if not entry.get("done") or "sf" not in previous:
        return ctx, method, budget
    config = dataclasses.replace(ctx.config, sf=previous["sf"])
    return dataclasses.replace(ctx, config=config), method or previous.get("method"), previous.get("budget")


def retrain(ctx: Context, *, method: str | None = None, budget: int | None = None, reselect: bool = True,
            force: bool = False) -> RetrainPipelineOutcome:
    """Select the unsafe set, stop if it needs labels, fine-tune and compare, write the report.

    ``method`` names whose clusters the unsafe set is selected for (default: without ``--sf``/``--budget``
    the last ``hudd assign``'s, else the workspace's active method). ``reselect=False`` (the CLI without ``--sf`` or ``--budget``) keeps the selection
    settings of the last ``hudd assign``: its unsafe set stays as it is unless the model, clusters or
    improvement set changed (or ``force``), and then it is selected again the same way.
    """
    retrain_step.check_ddp(ctx.config)
    selecting = ctx
    if not reselect:
        selecting, method, budget = _previous_selection(ctx, method, budget)
    unsafe = assign_step.run(selecting, method=method, budget=budget, force=force)
    missing = unlabelled_count(ctx)
    if missing and missing == len(unsafe.unsafe):  # nothing labelled yet; a partly filled sheet gets read_labels' row numbers
        report_step.run(ctx)
        ws = ctx.workspace
        raise HuddError(f"{ws.labels_csv}: {missing} of {len(unsafe.unsafe)} selected images have no label yet; label them "
                        f"(the images are in {ws.unsafe_dir}/C<i>/) and run `hudd retrain {ctx.case.root}` again")
    if ctx.config.treatment == "doctor":
        doctor_step.run(ctx, force=force)
    retrained = retrain_step.run(ctx, force=force)
    return RetrainPipelineOutcome(unsafe, retrained, report_step.run(ctx))
