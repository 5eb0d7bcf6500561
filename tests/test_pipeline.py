"""hudd analyze / hudd retrain / hudd evaluate through the CLI: skipping, rerunning what changed,
resuming after SIGKILL byte-identical, stopping for labels."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from hudd.methods import PRIMARY, pretrained_available
from hudd.sim.params import evidence
from tests.conftest import copy_case, one_line_error, run_cli


def _finished(case: Path) -> dict[str, str]:
    """When each step finished, from the manifest."""
    steps = json.loads((case / "HUDD/manifest.json").read_text())["steps"]
    return {name: entry.get("finished") for name, entry in steps.items()}


def _tables(workspace: Path) -> dict[str, str]:
    """SHA-256 of every CSV and NPY file under the workspace (the artifacts that must be byte-equal)."""
    return {str(p.relative_to(workspace)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(workspace.rglob("*")) if p.suffix in (".csv", ".npy") and p.is_file()}


def test_analyze_runs_every_step_then_skips_them_and_reruns_only_what_a_change_touches(case: Path):
    result = run_cli("analyze", str(case), "--batch-size", "16")
    assert result.exit_code == 0, result.output
    ws = case / "HUDD"
    for path in ("testResult.csv", "Heatmaps/images.csv", "summary.csv", "ClusterAnalysis/paper/clusters.csv", "clusters.csv",
                 "report.html"):
        assert (ws / path).is_file(), path
    active = json.loads((ws / "manifest.json").read_text())["method"]["name"]
    assert pd.read_csv(ws / "clusters.csv").equals(pd.read_csv(ws / f"ClusterAnalysis/{active}/clusters.csv")[["image", "cluster"]]
                                                    .assign(method=active)), "HUDD/clusters.csv holds the active method's clusters"
    assert "selected layer" in result.output and "report:" in result.output
    assert result.output.strip().splitlines()[-1] == f"next: read the report, then select improvement images to label for its clusters: hudd assign {case}"
    first = _finished(case)
    assert set(first) >= {"test", "heatmaps", "cluster", "export"}

    time.sleep(1.1)  # manifest times have a resolution of one second
    assert run_cli("analyze", str(case), "--batch-size", "16").exit_code == 0
    assert _finished(case) == first, "nothing changed, so no step reran"

    time.sleep(1.1)
    assert run_cli("analyze", str(case), "--batch-size", "16", "--k-max", "3").exit_code == 0
    second = _finished(case)
    assert second["test"] == first["test"] and second["heatmaps"] == first["heatmaps"]
    assert second["cluster"] != first["cluster"] and second["export"] != first["export"]
    assert pd.read_csv(ws / "summary.csv")["k"].max() <= 3


_KILLABLE_HUDD = """
import sys, time
from hudd.explain.lrp import Explainer
from hudd.steps import cluster
relevance, unit = Explainer.relevance, cluster._cluster_unit
def slow_relevance(self, images, target=None):
    time.sleep(0.3)
    return relevance(self, images, target)
def slow_unit(*args, **kwargs):
    time.sleep(0.6)
    return unit(*args, **kwargs)
Explainer.relevance = slow_relevance
cluster._cluster_unit = slow_unit
from hudd.cli import cli
cli(sys.argv[1:], prog_name="hudd")
"""


def _heatmaps_half_done(ws: Path) -> bool:
    try:
        return json.loads((ws / ".staging/heatmaps/Heatmaps/progress.json").read_text())["rows_done"] >= 8
    except (FileNotFoundError, ValueError, KeyError):
        return False


def _clustering_half_done(ws: Path) -> bool:
    """A layer of the paper's clustering is written (in the step's staging folder, where it waits to be swapped in)."""
    return any((ws / ".staging/cluster/ClusterAnalysis").glob("*/clusters.csv"))


_BY_FOURS = ("--method", "paper", "--batch-size", "4")


@pytest.fixture(scope="module")
def analyzed_by_fours(tmp_path_factory, trained_case: Path) -> Path:
    """The trained tiny case after ``hudd analyze --method paper --batch-size 4``, run without interruption (read-only).
    The paper's method: its heatmaps and per-layer clustering are the steps a kill interrupts."""
    reference = copy_case(trained_case, tmp_path_factory.mktemp("reference"))
    assert run_cli("analyze", str(reference), *_BY_FOURS).exit_code == 0
    return reference


@pytest.mark.slow
@pytest.mark.parametrize("moment", [_heatmaps_half_done, _clustering_half_done], ids=["mid-heatmaps", "mid-cluster"])
def test_analyze_killed_with_sigkill_resumes_to_byte_identical_artifacts(case: Path, analyzed_by_fours: Path, moment):
    reference = analyzed_by_fours

    ws = case / "HUDD"
    proc = subprocess.Popen([sys.executable, "-c", _KILLABLE_HUDD, "--quiet", "analyze", str(case), *_BY_FOURS])
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None and not moment(ws):
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run was killed, not finished"
    step = "heatmaps" if moment is _heatmaps_half_done else "cluster"
    assert not json.loads((ws / "manifest.json").read_text())["steps"].get(step, {}).get("done")
    assert not (ws / ("Heatmaps" if step == "heatmaps" else "summary.csv")).exists(), "a half-done step never looks finished"

    result = run_cli("analyze", str(case), *_BY_FOURS)
    assert result.exit_code == 0, result.output
    assert _tables(ws) == _tables(reference / "HUDD")


def test_retrain_stops_when_labels_are_needed_and_keeps_labels_typed_in(analyzed: Path, tmp_path: Path):
    case = copy_case(analyzed, tmp_path)
    ws = case / "HUDD"
    # an engineer's unlabelled improvement set: the labels of assign's sheet are blank
    labels = pd.read_csv(ws / "UnsafeSet/labels.csv", keep_default_na=False)
    truth = labels["label"].copy()
    labels["label"] = ""
    labels.to_csv(ws / "UnsafeSet/labels.csv", index=False)
    line = one_line_error(run_cli("retrain", str(case), "--retrain-epochs", "1"), str(ws / "UnsafeSet/labels.csv"),
                          f"{len(labels)} of {len(labels)} selected images have no label yet", "run `hudd retrain")
    assert "UnsafeSet" in line
    assert (ws / "report.html").is_file(), "the report shows the unsafe set to label"

    labels.loc[0, "label"] = truth[0]
    labels.to_csv(ws / "UnsafeSet/labels.csv", index=False)
    assert run_cli("assign", str(case), "--force").exit_code == 0, "a rerun of assign ..."
    again = pd.read_csv(ws / "UnsafeSet/labels.csv", keep_default_na=False)
    assert again.loc[again["image"] == labels.loc[0, "image"], "label"].tolist() == [truth[0]], "... keeps the label typed in"

    filled = again.merge(pd.DataFrame({"image": labels["image"], "truth": truth}), on="image")
    filled["label"] = filled["truth"]
    filled.drop(columns="truth").to_csv(ws / "UnsafeSet/labels.csv", index=False)
    result = run_cli("retrain", str(case), "--retrain-epochs", "1", "--no-baselines")
    assert result.exit_code == 0, result.output
    assert (case / "DNNModels/alexnet-small-hudd.pt").is_file()
    assert set(pd.read_csv(ws / "Retrain/metrics.csv")["method"]) == {"original", "hudd"}
    assert run_cli("report", str(case)).exit_code == 0, "the retrained model beside the original is not an ambiguity"


def test_evaluate_scores_the_clusters_against_the_injected_causes(analyzed: Path, tmp_path: Path):
    case = copy_case(analyzed, tmp_path)
    result = run_cli("evaluate", str(case))
    assert result.exit_code == 0, result.output
    table = pd.read_csv(case / "HUDD/evaluation.csv")
    active = json.loads((case / "HUDD/manifest.json").read_text())["method"]["name"]
    assert active == (PRIMARY if pretrained_available() else "paper")
    clusters = pd.read_csv(case / "HUDD" / f"ClusterAnalysis/{active}/clusters.csv")
    assert sorted(table["cluster"]) == sorted(clusters["cluster"].unique())
    assert table["size"].sum() == len(clusters)
    params = pd.read_csv(case / "DataSets/TestSet/params.csv").set_index("image")["cause"]
    causes = pd.crosstab(clusters["cluster"], clusters["image"].str.removeprefix("TestSet/").map(params))
    assert causes.to_numpy().sum() == len(clusters), "every clustered image has its injected cause"
    expected = (causes.max(axis=1) / causes.sum(axis=1)).sort_index()
    pd.testing.assert_series_equal(table.set_index("cluster")["purity"].sort_index(), expected, check_names=False, atol=1e-4)
    purity = causes.max(axis=1).sum() / len(clusters)
    last = result.output.strip().splitlines()[-1]
    assert last.startswith(f"purity={purity:.2f} coverage=") and last.endswith(f"clusters={len(table)}")

    described = table.dropna(subset=["names_parameter"])
    said = pd.read_csv(case / "HUDD/descriptions.csv").groupby("cluster")["feature"].agg(set)
    hazards = evidence("gaze")
    assert len(described) and set(described["dominant_cause"]) <= set(hazards)
    for row in described.itertuples():
        assert bool(row.names_parameter) <= (hazards[row.dominant_cause].parameter in said.get(row.cluster, set())), row.cluster
    assert (f"descriptions: the changed parameter named for {int(described['names_parameter'].sum())} of {len(described)} "
            "cause clusters") in result.output

    assert run_cli("evaluate", str(case), "--compare").exit_code == 0
    compared = pd.read_csv(case / "HUDD/clusterings.csv")
    layers = pd.read_csv(case / "HUDD/summary.csv")
    assert compared["method"].tolist() == ["paper"] + ["paper-layer"] * len(layers) + ([active] if active != "paper" else [])
    assert compared.loc[compared["active"], "method"].tolist() == [active]
    assert compared.loc[compared["active"], "purity"].item() == pytest.approx(purity, abs=1e-4)
    assert (compared["images"] == len(clusters)).all() and compared["seconds"].iloc[0] >= 0
    assert run_cli("report", str(case)).exit_code == 0
    assert "Clusterings compared" in (case / "HUDD/report.html").read_text()


def test_evaluate_without_ground_truth_says_what_it_needs(analyzed: Path, tmp_path: Path):
    case = copy_case(analyzed, tmp_path)
    (case / "DataSets/TestSet/params.csv").unlink()
    one_line_error(run_cli("evaluate", str(case)), "DataSets/TestSet/params.csv", "missing", "injected cause")
