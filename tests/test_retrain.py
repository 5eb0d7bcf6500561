"""Steps 6-7: bootstrap, effect sizes, labels.csv checks, and hudd retrain end to end on CPU."""

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hudd.models import load_model
from hudd.retrain.sampling import bootstrap_balance, bootstrap_to, mixed_rows, reduced_improvement_set
from hudd.retrain.stats import a12, mann_whitney_p
from tests.conftest import WEAK_OK, copy_case, run_cli

SEED = 0x7E


def test_bootstrap_balances_every_cluster_to_the_largest():
    groups = np.array(["C1"] * 5 + ["C2"] * 2 + ["C3"] * 1)
    picked = bootstrap_balance(groups, np.random.default_rng(SEED))
    assert (pd.Series(groups[picked]).value_counts() == 5).all()
    assert set(np.flatnonzero(groups == "C2")) <= set(picked), "every original image is kept"
    again = bootstrap_balance(groups, np.random.default_rng(SEED))
    assert np.array_equal(picked, again), "same seed, same sample"
    assert not np.array_equal(picked, bootstrap_balance(groups, np.random.default_rng(SEED + 1)))


def test_bootstrap_to_a_size_and_the_reduced_set():
    rng = np.random.default_rng(SEED)
    picked = bootstrap_to(3, 7, rng)
    assert len(picked) == 7 and set(picked) == {0, 1, 2}
    assert bootstrap_to(0, 5, rng).size == 0
    reduced = reduced_improvement_set(100, 10, rng)
    assert len(set(reduced)) == 10 and np.all(np.diff(reduced) > 0)


def test_mixed_rows_union_and_paired():
    extra = np.array([100, 101, 101])
    rows, epochs = mixed_rows(10, extra, 4, "union", np.random.default_rng(0))
    assert epochs == 4 and rows.tolist() == list(range(10)) + [100, 101, 101]
    rows, epochs = mixed_rows(10, extra, 4, "paired", np.random.default_rng(0))
    assert epochs == 1 and len(rows) == 24  # 4 passes of the 3 extras + 3 training rows each
    assert np.bincount(rows[rows >= 100] - 100).tolist() == [4, 8]
    assert ((rows < 10) & (rows >= 0)).sum() == 12  # as many training rows as extras, each pass
    assert mixed_rows(10, np.zeros(0, np.int64), 4, "paired", np.random.default_rng(0))[1] == 4  # no extras: the training set alone


@pytest.mark.parametrize("balanced_size", [3, 7, 40])
def test_paired_passes_are_as_long_as_the_labelled_set_whatever_the_balance(balanced_size):
    """Two selections with the same budget train on equally many rows, each extra shown equally often (give or take one)."""
    extra = 100 + np.arange(balanced_size)
    rows, epochs = mixed_rows(50, extra, 6, "paired", np.random.default_rng(0), pass_size=5)
    assert epochs == 1 and len(rows) == 2 * 6 * 5
    assert ((rows >= 0) & (rows < 50)).sum() == 30, "as many training rows as extras"
    shown = np.bincount(rows[rows >= 100] - 100, minlength=balanced_size)
    assert shown.sum() == 30 and shown.max() - shown.min() <= 1
    with pytest.raises(ValueError):
        mixed_rows(10, extra, 1, "blend", np.random.default_rng(0))


@pytest.mark.parametrize("x, y, expected", [
    ([1, 2, 3], [1, 2, 3], 0.5), ([4, 5], [1, 2], 1.0), ([1, 2], [4, 5], 0.0), ([1], [1, 2], 0.25), ([3, 1], [2], 0.5),
])
def test_a12_known_values(x, y, expected):
    assert a12(x, y) == pytest.approx(expected)


def test_mann_whitney_p_is_small_for_separated_samples():
    assert mann_whitney_p(range(10, 20), range(0, 10)) < 0.001
    assert np.isnan(mann_whitney_p([1, 1], [1, 1]))


@pytest.fixture
def assigned(tmp_path: Path, assigned_case: Path) -> Path:
    """A writable copy of the session's assigned case."""
    return copy_case(assigned_case, tmp_path)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_retrain_end_to_end_on_cpu(assigned: Path):
    model = assigned / "DNNModels/alexnet-small.pt"
    before = _digest(model)
    result = run_cli("retrain", str(assigned), "--retrain-epochs", "1", "--runs", "2")
    assert result.exit_code == 0, result.output
    assert _digest(model) == before, "the input model is never touched"
    metrics = pd.read_csv(assigned / "HUDD/Retrain/metrics.csv")
    assert metrics["method"].tolist() == ["original", "hudd", "B1", "B2", "hudd", "B1", "B2"]
    assert metrics["accuracy"].between(0, 1).all()
    assert {"class_TopLeft", "cluster_C1", "hazard", "cause_dim"} <= set(metrics.columns)
    assert (metrics.loc[metrics["method"] == "original", "cluster_C1"] == 0).all(), "the original fails every clustered image"
    labels = pd.read_csv(assigned / "HUDD/UnsafeSet/labels.csv")
    hudd_rows = metrics[metrics["method"] == "hudd"]
    assert (hudd_rows["n_extra"] == labels["cluster"].value_counts().max() * labels["cluster"].nunique()).all()
    retrained = load_model(assigned / "DNNModels/alexnet-small-hudd.pt")
    assert retrained.meta["retrained_from"] == "alexnet-small.pt"
    assert "A12_vs_B1" in result.stdout


def test_retrain_is_deterministic(assigned: Path, tmp_path: Path):
    twin = tmp_path / "twin"
    shutil.copytree(assigned, twin)
    for case in (assigned, twin):
        assert run_cli("retrain", str(case), "--retrain-epochs", "1", "--no-baselines").exit_code == 0
    assert (assigned / "HUDD/Retrain/metrics.csv").read_bytes() == (twin / "HUDD/Retrain/metrics.csv").read_bytes()


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.assign(label=[""] + list(t["label"][1:])), "rows 2 have no label"),
    (lambda t: t.assign(label=["Sideways"] + list(t["label"][1:])), "rows 2 have a label the model does not know ('Sideways')"),
    (lambda t: pd.concat([t, t.iloc[[0]]]), "are not (or again) images of the unsafe set"),
    (lambda t: t.iloc[1:], "unsafe images have no row"),
], ids=["missing", "unknown", "extra", "absent"])
def test_bad_labels_name_the_rows_and_keep_everything(assigned: Path, edit, message):
    path = assigned / "HUDD/UnsafeSet/labels.csv"
    edit(pd.read_csv(path, keep_default_na=False)).to_csv(path, index=False)
    result = run_cli("retrain", str(assigned), "--retrain-epochs", "1")
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "labels.csv" in result.stderr
    assert (assigned / "HUDD/UnsafeSet/unsafe.csv").is_file() and (assigned / "HUDD/clusters.csv").is_file()
    assert not (assigned / "DNNModels/alexnet-small-hudd.pt").exists()


def test_retrain_before_analyze_says_what_to_run(case: Path):
    result = run_cli("retrain", str(case))
    assert result.exit_code == 2 and "run `hudd analyze" in result.stderr


def test_keypoint_model_assign_and_retrain_end_to_end(tmp_path: Path):
    """kpnet: each face element assigns its own clusters; labels.csv carries coordinates; retraining runs."""
    from hudd.sim import SimulationSettings, simulate_case

    simulate_case(tmp_path, SimulationSettings(task="landmarks", n_train=12, n_test=16, n_improve=10, size=32))
    (tmp_path / "hudd.toml").write_text(WEAK_OK)  # a one-epoch kpnet misses nearly every keypoint
    assert run_cli("train", str(tmp_path), "--epochs", "1", "--batch-size", "6").exit_code == 0
    for command in (["test"], ["heatmaps"], ["cluster"], ["assign", "--budget", "4"]):
        result = run_cli(command[0], str(tmp_path), *command[1:])
        assert result.exit_code == 0, result.output
    labels = pd.read_csv(tmp_path / "HUDD/UnsafeSet/labels.csv")
    assert len(labels) == 4 and labels["image"].is_unique
    assert list(labels.columns[:4]) == ["image", "cluster", "upper_lid_0_x", "upper_lid_0_y"]
    truth = pd.read_csv(tmp_path / "DataSets/ImprovementSet/keypoints.csv").set_index("image")
    first = labels.iloc[0]
    assert first["iris_centre_x"] == pytest.approx(truth.loc[first["image"].split("/", 1)[1], "iris_centre_x"], abs=1e-3)
    assert (labels["cluster"].str.contains("-C")).all(), "clusters of face elements"
    result = run_cli("retrain", str(tmp_path), "--retrain-epochs", "1")
    assert result.exit_code == 0, result.output
    metrics = pd.read_csv(tmp_path / "HUDD/Retrain/metrics.csv")
    assert metrics["method"].tolist() == ["original", "hudd", "B1", "B2"]
    assert metrics["mean_error_px"].notna().all()
    broken = labels.astype({"iris_centre_y": object})
    broken.loc[1, "iris_centre_y"] = "left"
    broken.to_csv(tmp_path / "HUDD/UnsafeSet/labels.csv", index=False)
    result = run_cli("retrain", str(tmp_path), "--model", "kpnet.pt", "--retrain-epochs", "1", "--force")
    assert result.exit_code == 2 and "rows 3 have a coordinate that is not a number" in result.stderr
