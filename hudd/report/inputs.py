"""Everything the report shows, read from files: the workspace, the case's data sets and TestSet params.csv.

A missing file is ``None`` (its section says which command to run); an unreadable one is also
``None`` plus a line in ``problems``, so a damaged workspace still gives a report instead of a crash.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..config import Config
from ..case.data import SPLITS, Case, read_params
from ..core.errors import HuddError
from ..methods import PAPER
from ..workspace.tables import assigned_method
from ..models import ModelSpec
from ..workspace.readers import read_table
from ..workspace.workspace import Workspace

__all__ = ["ReportInputs", "SetCount", "read_inputs", "STEPS"]

# the steps in order, with the command that runs each
STEPS = (("test", "test"), ("heatmaps", "heatmaps"), ("cluster", "cluster"), ("export", "export"), ("describe", "describe"),
         ("assign", "assign"), ("retrain", "retrain"))


@dataclass
class SetCount:
    """One data set: its number of images (None when it cannot be listed), labelled or not, and why not listed."""

    split: str
    images: int | None
    labelled: bool
    problem: str = ""


@dataclass
class ReportInputs:
    """The files of one case's workspace, as tables (None when absent)."""

    case: Case
    workspace: Workspace
    config: Config
    spec: ModelSpec
    model_file: str
    manifest: dict
    sets: list[SetCount]
    train: pd.DataFrame | None = None
    test: pd.DataFrame | None = None
    layers: pd.DataFrame | None = None
    summary: pd.DataFrame | None = None
    clusters: pd.DataFrame | None = None  # the active method's, with a ``layer`` column (the method's name for a feature method)
    method: dict = field(default_factory=dict)  # the active method: name, requested, note
    method_row: pd.DataFrame | None = None  # a feature method's method.csv
    paper_clusters: pd.DataFrame | None = None  # the paper's clusters when another method is active
    unsafe: pd.DataFrame | None = None
    quotas: pd.DataFrame | None = None
    clusterings: pd.DataFrame | None = None
    metrics: pd.DataFrame | None = None
    comparison: pd.DataFrame | None = None
    findings: pd.DataFrame | None = None  # one sentence per cluster (hudd describe)
    params: pd.DataFrame | None = None
    problems: list[str] = field(default_factory=list)
    base: Path | None = None  # the folder the report is written to: links are relative to it

    def steps(self) -> tuple[tuple[str, str], ...]:
        """:data:`STEPS`, with the active feature method's step (and its command) after ``test``."""
        name = self.method.get("name", PAPER)
        if name == PAPER:
            return STEPS
        return (STEPS[0], (name, f"cluster --method {name}"), *STEPS[1:])

    def command(self, step: str) -> str:
        """The command line that runs ``step`` on this case."""
        return f"hudd {step} {self.case.root}"

    def step(self, name: str) -> dict:
        """The manifest's entry of ``name`` (empty when it never ran)."""
        entry = self.manifest.get("steps", {}).get(name)
        return entry if isinstance(entry, dict) else {}

    def first_missing(self, *steps: str) -> str:
        """The command of the first of ``steps`` not recorded done (the last one when all are)."""
        for name in steps:
            if not self.step(name).get("done"):
                return self.command(name)
        return self.command(steps[-1])

    def relative(self, path: Path) -> str:
        """``path`` relative to the report's folder, with ``/`` separators, for a link."""
        return Path(os.path.relpath(path, self.base or self.workspace.root)).as_posix()


def _csv(path: Path, problems: list[str], columns=(), **kwargs) -> pd.DataFrame | None:
    """The table at ``path`` checked by :func:`hudd.workspace.readers.read_table`; None (and the problem noted) when it is
    missing or damaged, so the report still shows everything else."""
    if not path.is_file():
        return None
    try:
        return read_table(path, columns, fix="rerun the step that writes it", allow_empty=True, **kwargs)
    except HuddError as exc:
        problems.append(str(exc))
        return None


def _sets(ctx) -> list[SetCount]:
    counts = []
    for split in SPLITS:
        if not ctx.case.split_dir(split).is_dir():
            counts.append(SetCount(split, None, False, "missing"))
            continue
        try:
            listing = ctx.listing(split, unlabelled_ok=True)
        except HuddError as exc:
            counts.append(SetCount(split, None, False, str(exc)))
            continue
        counts.append(SetCount(split, len(listing), bool(listing.labelled)))
    return counts


def read_inputs(ctx) -> ReportInputs:
    """Read every input of the report from ``ctx`` (a :class:`hudd.steps.common.Context`)."""
    ws = ctx.workspace
    problems: list[str] = []
    strings = {"keep_default_na": False}  # class names such as "NA" stay text; the group column stays ""
    data = ReportInputs(case=ctx.case, workspace=ws, config=ctx.config, spec=ctx.model.spec, model_file=ctx.model.path.name,
                        manifest=ws.read_manifest(), sets=_sets(ctx), problems=problems)
    results = {"image": "str", "correct": "bool"}
    data.train = _csv(ws.train_result, problems, results, **strings)
    data.test = _csv(ws.test_result, problems, results, **strings)
    data.layers = _csv(ws.heatmap_layers, problems, {"layer": "str", "alias": "str"})
    data.summary = _csv(ws.summary_csv, problems, {"group": "text", "layer": "str", "selected": "bool"}, **strings)
    data.method = ws.active_method()
    name = data.method["name"]
    clusters = {"image": "str", "cluster": "str"}
    data.clusters = _csv(ws.method_clusters_csv(name), problems, clusters)
    if name != PAPER:
        data.method_row = _csv(ws.cluster_dir(name) / "method.csv", problems, **strings)
        data.paper_clusters = _csv(ws.method_clusters_csv(PAPER), problems, clusters)
        if data.clusters is not None:
            data.clusters["layer"] = name
    data.unsafe = _csv(ws.unsafe_csv, problems, clusters, **strings)
    data.quotas = _csv(ws.quotas_csv, problems, {"cluster": "str", "size": "int", "quota": "int", "selected": "int"}, **strings)
    data.clusterings = _csv(ws.clusterings_csv, problems, **strings)
    assigned = assigned_method(ws)
    if data.unsafe is not None and assigned != name:
        problems.append(f"{ws.unsafe_dir}: selected for the clusters of method {assigned}, not of the active method {name}; "
                        f"run `hudd assign {ctx.case.root}` to select for these clusters")
        data.unsafe = data.quotas = None
    data.findings = _csv(ws.findings_csv, problems, {"cluster": "str", "images": "int", "sentence": "str"})
    data.metrics = _csv(ws.metrics_csv, problems)
    data.comparison = _csv(ws.retrain_dir / "comparison.csv", problems)
    try:
        data.params = read_params(ctx.case, "TestSet")
    except HuddError as exc:
        problems.append(str(exc))
    for name in ("train", "test"):
        frame = getattr(data, name)
        if frame is not None and frame["correct"].dtype != bool:
            frame["correct"] = frame["correct"].astype(str).str.lower().eq("true")
    if data.summary is not None and data.summary["selected"].dtype != bool:
        data.summary["selected"] = data.summary["selected"].astype(str).str.lower().eq("true")
    return data
