from pathlib import Path

import numpy as np
import torch

from hudd.case.data import Case, ImageDataset, list_split
from hudd.models import get_model, load_model
from hudd.sim import SimulationSettings, simulate_case
from hudd.retrain.training import TrainSettings, fit, keypoint_target_maps
from tests.conftest import run_cli


def test_trained_model_is_a_self_describing_checkpoint(trained_case: Path):
    loaded = load_model(trained_case / "DNNModels/alexnet-small.pt")
    assert loaded.spec.classes == tuple(sorted(p.name for p in (trained_case / "DataSets/TrainingSet").iterdir() if p.is_dir() and p.name != "masks"))
    assert (loaded.spec.channels, loaded.spec.height) == (1, 32)
    assert 0.2 < loaded.spec.mean[0] < 0.9
    assert loaded.meta["n_train"] + loaded.meta["n_val"] == 160


def test_train_prints_per_class_and_per_cause_results(tmp_path: Path, tiny_case: Path):
    import shutil

    case = tmp_path / "case"
    shutil.copytree(tiny_case, case)
    result = run_cli("train", str(case), "--epochs", "1", "--name", "first")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "test accuracy" in out and "TopLeft" in out and "error rate with a hazard" in out
    again = run_cli("train", str(case), "--epochs", "1", "--name", "first")
    assert again.exit_code == 2
    assert "first.pt: exists; pass --force" in again.stderr


def test_training_is_deterministic(tmp_path: Path, tiny_case: Path):
    case = Case(tiny_case)
    from hudd.models import ModelSpec

    listing = list_split(case, "TrainingSet")
    spec = ModelSpec(arch="alexnet-small", arch_kwargs={"in_channels": 1, "num_classes": 8, "image_size": 32}, task="classification",
                     channels=1, height=32, width=32, mean=(0.5,), std=(0.2,), classes=listing.classes)
    data = ImageDataset(case, listing, spec)
    weights = []
    for _ in range(2):
        torch.manual_seed(0)
        model = get_model("alexnet-small", in_channels=1, num_classes=8, image_size=32)
        fit(model, data, None, task="classification", settings=TrainSettings(epochs=1, batch_size=32), device=torch.device("cpu"))
        weights.append(torch.cat([p.flatten() for p in model.parameters()]))
    assert torch.equal(weights[0], weights[1])


def test_keypoint_training_reduces_the_loss(tmp_path: Path):
    simulate_case(tmp_path, SimulationSettings(task="landmarks", n_train=32, n_test=0, n_improve=0, size=32))
    case = Case(tmp_path)
    listing = list_split(case, "TrainingSet")
    assert listing.task == "keypoints" and len(listing.keypoints) == 13
    from hudd.models import ModelSpec

    spec = ModelSpec(arch="kpnet", arch_kwargs={"in_channels": 1, "num_keypoints": 13, "image_size": 32, "width": 0.1}, task="keypoints",
                     channels=1, height=32, width=32, mean=(0.5,), std=(0.2,), keypoints=listing.keypoints)
    torch.manual_seed(0)
    model = get_model("kpnet", **spec.arch_kwargs)
    history = fit(model, ImageDataset(case, listing, spec), None, task="keypoints",
                  settings=TrainSettings(epochs=4, batch_size=8, lr=3e-3), device=torch.device("cpu"))
    assert np.isfinite(history.train_loss).all()
    assert history.train_loss[-1] < history.train_loss[0]


def test_keypoint_target_maps_peak_at_the_keypoint():
    maps = keypoint_target_maps(torch.tensor([[[3.0, 5.0]]]), 8, 8)
    assert maps.shape == (1, 1, 8, 8)
    assert divmod(int(maps.flatten().argmax()), 8) == (5, 3)
