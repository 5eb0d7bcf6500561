"""hudd test and hudd heatmaps through the CLI: outputs, skipping, resuming, bad input (SIGKILL: test_pipeline.py)."""

import hashlib
import json
import re
import shutil
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pandas as pd
import torch

from hudd.case.data import Case, ImageDataset, list_split
from hudd.explain.lrp import Explainer
from hudd.models import load_model, save_checkpoint
from tests.conftest import WEAK_OK, one_line_error, run_cli


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def test_test_step_writes_one_row_per_image(case: Path):
    result = run_cli("test", str(case))
    assert result.exit_code == 0, result.output
    train = pd.read_csv(case / "HUDD/trainResult.csv")
    test = pd.read_csv(case / "HUDD/testResult.csv")
    assert list(test.columns) == ["image", "label", "prediction", "correct", "confidence"]
    assert len(train) == 160 and len(test) == 64
    assert test["image"].str.startswith("TestSet/").all()
    assert (test["correct"] == (test["label"] == test["prediction"])).all()
    assert test["confidence"].between(0, 1).all()
    assert f"error-inducing test images: {int((~test['correct']).sum())}" in result.stdout


def test_workspace_flag_is_relative_to_the_current_folder_and_the_toml_key_to_the_case(case: Path, tmp_path: Path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = run_cli("test", str(case), "--workspace", "runs/ws")
    assert result.exit_code == 0
    assert (elsewhere / "runs" / "ws" / "testResult.csv").is_file()
    assert result.stdout.splitlines()[-1] == f"next: hudd heatmaps {case} --workspace runs/ws", "the next step, in the same workspace"
    assert not (case / "runs").exists()
    (case / "hudd.toml").write_text('workspace = "ws2"\n')
    assert run_cli("test", str(case)).exit_code == 0
    assert (case / "ws2" / "testResult.csv").is_file() and not (elsewhere / "ws2").exists()


def test_steps_skip_when_inputs_are_unchanged_and_rerun_when_the_model_changes(case: Path):
    from click.testing import CliRunner

    from hudd.cli import cli

    assert run_cli("test", str(case)).exit_code == 0
    manifest = json.loads((case / "HUDD/manifest.json").read_text())
    again = CliRunner().invoke(cli, ["test", str(case)])
    assert "test: inputs unchanged, skipping" in again.stderr
    assert json.loads((case / "HUDD/manifest.json").read_text())["steps"]["test"]["finished"] == manifest["steps"]["test"]["finished"]
    loaded = load_model(case / "DNNModels/alexnet-small.pt")
    with torch.no_grad():
        loaded.module.classifier[6].bias.add_(1.0)
    save_checkpoint(case / "DNNModels/alexnet-small.pt", loaded.module, loaded.spec, loaded.meta)
    rerun = CliRunner().invoke(cli, ["test", str(case)])
    assert "skipping" not in rerun.stderr
    assert json.loads((case / "HUDD/manifest.json").read_text())["steps"]["test"]["inputs"]["model"] != manifest["steps"]["test"]["inputs"]["model"]


def test_heatmaps_are_the_channel_sums_of_relevance(case: Path):
    assert run_cli("test", str(case)).exit_code == 0
    result = run_cli("heatmaps", str(case), "--batch-size", "8")
    assert result.exit_code == 0, result.output
    index = pd.read_csv(case / "HUDD/Heatmaps/images.csv")
    layers = pd.read_csv(case / "HUDD/Heatmaps/layers.csv")
    errors = pd.read_csv(case / "HUDD/testResult.csv").query("not correct")
    assert index["image"].tolist() == errors["image"].tolist()
    assert layers["alias"].tolist() == ["conv1", "conv2", "conv3", "conv4", "conv5", "fc1", "fc2", "fc3"]
    for row in layers.itertuples():
        assert np.load(case / f"HUDD/Heatmaps/{row.layer}.npy").shape == (len(errors), row.N, row.M)
    loaded = load_model(case / "DNNModels/alexnet-small.pt")
    listing = list_split(Case(case), "TestSet", spec=loaded.spec)
    dataset = ImageDataset(Case(case), listing, loaded.spec)
    first = listing.ids.index(index["image"][0])
    _, rel = Explainer(loaded.module).relevance(dataset[first][0][None])
    stored = np.load(case / "HUDD/Heatmaps/features.3.npy")[0]
    np.testing.assert_allclose(stored, rel["features.3"].sum(1)[0].numpy(), rtol=1e-4, atol=1e-7)


def test_heatmaps_resume_after_a_crash_and_end_byte_identical(case: Path, tmp_path: Path, monkeypatch):
    assert run_cli("test", str(case)).exit_code == 0
    reference = tmp_path / "reference"
    shutil.copytree(case, reference)
    assert run_cli("heatmaps", str(reference), "--batch-size", "4").exit_code == 0

    calls = {"n": 0}
    original = Explainer.relevance

    def crash_after_two_batches(self, images, target=None):
        calls["n"] += 1
        if calls["n"] > 2:
            raise KeyboardInterrupt
        return original(self, images, target)

    monkeypatch.setattr(Explainer, "relevance", crash_after_two_batches)
    interrupted = run_cli("heatmaps", str(case), "--batch-size", "4")
    assert interrupted.exit_code == 130
    assert json.loads((case / "HUDD/.staging/heatmaps/Heatmaps/progress.json").read_text())["rows_done"] == 8
    assert not (case / "HUDD/Heatmaps").exists(), "unfinished heatmaps never look finished"
    monkeypatch.setattr(Explainer, "relevance", original)
    seen = []
    monkeypatch.setattr(Explainer, "relevance", lambda self, images, target=None: seen.append(len(images)) or original(self, images, target))
    assert run_cli("heatmaps", str(case), "--batch-size", "4").exit_code == 0
    n_errors = len(pd.read_csv(case / "HUDD/Heatmaps/images.csv"))
    assert sum(seen) == n_errors - 8, "the resumed run computes only the rows that were missing"
    assert _digests(case / "HUDD/Heatmaps") == _digests(reference / "HUDD/Heatmaps")



def test_no_error_inducing_image_is_nothing_to_analyse(case: Path):
    assert run_cli("test", str(case)).exit_code == 0
    results = pd.read_csv(case / "HUDD/testResult.csv")
    results["correct"] = True
    results.to_csv(case / "HUDD/testResult.csv", index=False)
    one_line_error(run_cli("heatmaps", str(case)), "testResult.csv", "makes no error", "nothing to analyse")
    assert (case / "HUDD/testResult.csv").is_file() and (case / "HUDD/trainResult.csv").is_file()


def test_heatmaps_before_test_says_what_to_run(case: Path):
    one_line_error(run_cli("heatmaps", str(case)), "testResult.csv: missing", "hudd test")


def test_unknown_layer_lists_valid_layers(case: Path):
    assert run_cli("test", str(case)).exit_code == 0
    one_line_error(run_cli("heatmaps", str(case), "--layers", "features.1"), "unknown layer 'features.1'", "valid layers: features.0, features.3")


def test_nan_output_names_the_image(case: Path):
    loaded = load_model(case / "DNNModels/alexnet-small.pt")
    with torch.no_grad():
        loaded.module.classifier[6].bias[0] = float("nan")
    save_checkpoint(case / "DNNModels/alexnet-small.pt", loaded.module, loaded.spec, loaded.meta)
    one_line_error(run_cli("test", str(case)), "DataSets/TrainingSet/", "is NaN or infinite", "alexnet-small.pt")


def test_model_and_data_that_do_not_fit(case: Path):
    big = case / "DataSets/TestSet/TopLeft/zzz.png"
    iio.imwrite(big, np.zeros((40, 40), np.uint8))
    one_line_error(run_cli("test", str(case)), str(case / "DataSets/TestSet"), "1 of 65 images are not 32x32", "TestSet/TopLeft/zzz.png is 40x40")
    big.unlink()
    shutil.copytree(case / "DataSets/TestSet/TopLeft", case / "DataSets/TestSet/Upwards")
    one_line_error(run_cli("test", str(case)), "DataSets/TestSet/Upwards", "unknown to alexnet-small.pt")


def test_second_command_on_a_busy_workspace_exits_2(case: Path):
    from hudd.workspace.workspace import Workspace

    with Workspace(case / "HUDD").locked("hudd heatmaps"):
        one_line_error(run_cli("test", str(case)), "workspace is in use by pid", "hudd heatmaps")


def test_keypoint_case_end_to_end(tmp_path: Path):
    """A landmarks case: kpnet trains, per-keypoint errors are scored, the worst keypoint is explained."""
    from hudd.sim import SimulationSettings, simulate_case

    simulate_case(tmp_path, SimulationSettings(task="landmarks", n_train=12, n_test=6, n_improve=0, size=32))
    assert run_cli("train", str(tmp_path), "--epochs", "1", "--batch-size", "6").exit_code == 0
    result = run_cli("test", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "within the error threshold) on 0% of the TrainingSet images" in result.stderr, "a one-epoch kpnet misses nearly every keypoint"
    one_line_error(run_cli("heatmaps", str(tmp_path)), "on 0% of the TrainingSet images", "input convention", "--allow-weak-model")
    (tmp_path / "hudd.toml").write_text(WEAK_OK)
    test = pd.read_csv(tmp_path / "HUDD/testResult.csv")
    assert "error_upper_lid_0" in test.columns and "error_iris_centre" in test.columns
    errors = test.filter(like="error_").drop(columns="error_px").to_numpy()
    np.testing.assert_allclose(test["error_px"], errors.mean(axis=1), atol=1e-3)
    assert (test["worst_keypoint"] == errors.argmax(axis=1)).all()
    assert (test["correct"] == (test["error_px"] <= 4.0)).all()
    result = run_cli("heatmaps", str(tmp_path))
    assert result.exit_code == 0, result.output
    index = pd.read_csv(tmp_path / "HUDD/Heatmaps/images.csv")
    names = [c[len("error_"):] for c in test.columns if c.startswith("error_") and c != "error_px"]
    wrong = test[~test["correct"]]
    assert index["target"].tolist() == [names[k] for k in wrong["worst_keypoint"]]
    layers = pd.read_csv(tmp_path / "HUDD/Heatmaps/layers.csv")
    assert layers["alias"].tolist()[-2:] == ["deconv1", "deconv2"]
    first = np.load(tmp_path / "HUDD/Heatmaps/features.0.npy")
    assert first.shape == (len(wrong), 32, 32) and np.isfinite(first).all()


def test_keypoint_errors_are_clustered_per_face_element(tmp_path: Path):
    from hudd.sim import SimulationSettings, simulate_case

    simulate_case(tmp_path, SimulationSettings(task="landmarks", n_train=12, n_test=16, n_improve=0, size=32))
    (tmp_path / "hudd.toml").write_text(WEAK_OK)  # a one-epoch kpnet misses nearly every keypoint
    assert run_cli("train", str(tmp_path), "--epochs", "1", "--batch-size", "6").exit_code == 0
    for command in ("test", "heatmaps", "cluster"):
        result = run_cli(command, str(tmp_path))
        assert result.exit_code == 0, result.output
        if command == "test":
            assert "training accuracy" not in result.stdout, "a keypoint model has no accuracy"
            assert re.search(r"^training mean keypoint error [\d.]+ px; [\d.]+% of the images within 4 px$", result.stdout, re.M)
    summary = pd.read_csv(tmp_path / "HUDD/summary.csv", keep_default_na=False)
    clusters = pd.read_csv(tmp_path / "HUDD/ClusterAnalysis/paper/clusters.csv")
    index = pd.read_csv(tmp_path / "HUDD/Heatmaps/images.csv")
    groups = {"upper_lid", "lower_lid", "iris_centre"}
    assert set(summary["group"]) <= groups
    assert summary.groupby("group")["selected"].sum().eq(1).all(), "each face element selects its own layer"
    assert len(index) >= 4 and set(clusters["image"]) == set(index["image"]), "every error-inducing image is clustered"
    assert set(summary["group"]) == set(index["target"].str.replace(r"_?\d+$", "", regex=True)), "a layer per face element in error"
    merged = clusters.merge(index, on="image")
    element = merged["target"].str.replace(r"_?\d+$", "", regex=True)
    assert (merged["cluster"].str.rsplit("-C", n=1).str[0] == element).all(), "cluster ids carry the face element"
    results = pd.read_csv(tmp_path / "HUDD/testResult.csv")
    assert {"iris_centre_x", "iris_centre_y"} <= set(results.columns), "the predicted keypoints are kept"
    gif = next((tmp_path / "HUDD/ClusterAnalysis").glob("*/*/*.gif"))
    frame = iio.imread(gif, index=0)[:, :, :3].astype(int)
    for colour in ((0, 200, 60), (235, 30, 30)):
        assert (np.abs(frame - colour).sum(axis=2) < 40).any(), f"true (green) and predicted (red) keypoints are drawn: {colour}"
