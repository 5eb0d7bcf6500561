"""Engineers bring their own model: torchvision classifiers trained outside hudd, saved as PyTorch users save them,
on images as users have them.

The reference throughout is plain torch/torchvision code (``ImageFolder``, ``transforms.Normalize``), which hudd must
agree with exactly.
"""

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision
from click.testing import CliRunner
from PIL import Image
from torchvision import transforms

from hudd.cli import cli
from hudd.sim import SimulationSettings, simulate_case
from tests.conftest import copy_case, one_line_error, run_cli

SIGNS = SimulationSettings(task="signs", n_train=96, n_test=64, n_improve=16, size=32, seed=0, hazard_rate=0.3)
IMAGENET = transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
CONVERTED = {"000001.png": "L", "000002.png": "RGBA", "000003.png": "P", "000004.png": "CMYK"}  # in a TestSet class folder


def _plain_predictions(model: torch.nn.Module, folder: Path, normalize=IMAGENET) -> np.ndarray:
    """Predicted class of every image of an image folder, as plain torchvision reads it (``ImageFolder``: RGB)."""
    data = torchvision.datasets.ImageFolder(folder, transform=transforms.Compose([transforms.ToTensor(), normalize]))
    with torch.no_grad():
        return torch.cat([model.eval()(x).argmax(1) for x, _ in torch.utils.data.DataLoader(data, batch_size=64)]).numpy()


def _plain_labels(folder: Path) -> np.ndarray:
    return np.array(torchvision.datasets.ImageFolder(folder).targets)


def _convert_some_test_images(case: Path) -> list[str]:
    """Save a few TestSet images as users have them (grayscale, RGBA, palette, CMYK JPEG); their ids."""
    folder = sorted(p for p in (case / "DataSets/TestSet").iterdir() if p.is_dir())[0]
    ids = []
    for name, mode in CONVERTED.items():
        path = sorted(folder.glob("*.png"))[len(ids)]
        image = Image.open(path).convert(mode)
        path.unlink()
        target = path.with_suffix(".jpg") if mode == "CMYK" else path
        image.save(target)
        ids.append(str(target.relative_to(case / "DataSets")))
    return ids


@pytest.fixture(scope="module")
def own(tmp_path_factory) -> Path:
    """A 32 px RGB signs case (no masks/: ImageFolder would take it for a class; a few TestSet images grayscale, RGBA,
    palette, CMYK) and ``DNNModels/resnet18.pt``: a resnet18 trained on it with plain torchvision code for two epochs,
    ImageNet's normalisation, saved as a bare state_dict. Read only: copy it."""
    case = tmp_path_factory.mktemp("own") / "case"
    simulate_case(case, SIGNS)
    for masks in case.glob("DataSets/*/masks"):
        shutil.rmtree(masks)
    _convert_some_test_images(case)
    train = torchvision.datasets.ImageFolder(case / "DataSets/TrainingSet", transform=transforms.Compose([transforms.ToTensor(), IMAGENET]))
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=len(train.classes))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(2):
        model.train()
        for images, labels in torch.utils.data.DataLoader(train, batch_size=32, shuffle=True):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(images), labels).backward()
            optimizer.step()
    (case / "DNNModels").mkdir(exist_ok=True)
    torch.save(model.state_dict(), case / "DNNModels/resnet18.pt")
    torch.save(optimizer.state_dict(), case / "optimizer.pt")  # for the training checkpoints of the tests
    return case


def _resnet18(case: Path) -> torch.nn.Module:
    model = torchvision.models.resnet18(num_classes=8)
    model.load_state_dict(torch.load(case / "DNNModels/resnet18.pt", weights_only=True))
    return model.eval()


def _from_readme(path: Path) -> tuple[torch.nn.Module, dict]:
    """A hudd checkpoint loaded into plain torchvision with the lines README.md gives."""
    checkpoint = torch.load(path, weights_only=True)
    model = torchvision.models.get_model(checkpoint["spec"]["arch"], **checkpoint["spec"]["arch_kwargs"])
    model.load_state_dict(checkpoint["state_dict"])
    return model, checkpoint["spec"]


def test_a_torchvision_state_dict_is_tested_as_torchvision_tests_it(own: Path, tmp_path: Path):
    """`hudd test --arch resnet18` on a bare state_dict: ImageNet's mean/std by default (said when it loads), images of
    other modes converted as ImageFolder converts them (and counted), the very predictions of plain torchvision."""
    case = copy_case(own, tmp_path)
    result = CliRunner().invoke(cli, ["test", str(case), "--arch", "resnet18"])
    assert result.exit_code == 0, result.output
    assert "resnet18 (state_dict), 8 classes; input 32x32 RGB, mean [0.485, 0.456, 0.406], std [0.229, 0.224, 0.225]" in result.stderr
    assert "ImageNet's mean/std, the default for torchvision models" in result.stderr
    assert f"note: {len(CONVERTED)} of 64 TestSet images converted to RGB" in result.stderr.splitlines()
    plain = _plain_predictions(_resnet18(case), case / "DataSets/TestSet")
    results = pd.read_csv(case / "HUDD/testResult.csv")
    classes = sorted(p.name for p in (case / "DataSets/TestSet").iterdir() if p.is_dir())
    assert results["prediction"].tolist() == [classes[k] for k in plain], "the same prediction for every image"
    accuracy = float((plain == _plain_labels(case / "DataSets/TestSet")).mean())
    assert results["correct"].mean() == accuracy and accuracy > 0.4, "the test accuracy plain torchvision computes, well above chance"
    assert f"test accuracy {accuracy:.4f}" in result.stdout


def test_training_checkpoints_load_and_an_unknown_dict_names_its_keys(own: Path, tmp_path: Path):
    case = copy_case(own, tmp_path)
    state = torch.load(case / "DNNModels/resnet18.pt", weights_only=True)
    (case / "DNNModels/resnet18.pt").unlink()
    optimizer = torch.load(case / "optimizer.pt", weights_only=True)
    torch.save({"epoch": 3, "model_state_dict": state, "optimizer_state_dict": optimizer, "loss": 0.4}, case / "DNNModels/epoch3.pth")
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, case / "DNNModels/parallel.pt")
    expected = None
    for name in ("epoch3.pth", "parallel.pt"):
        result = run_cli("test", str(case), "--model", name, "--arch", "resnet18", "--workspace", str(case / name))
        assert result.exit_code == 0, result.output
        accuracy = pd.read_csv(case / name / "testResult.csv")["correct"].mean()
        expected = accuracy if expected is None else expected
        assert accuracy == expected > 0.4
    torch.save({"epoch": 3, "weights_ema": state, "optimizer": optimizer}, case / "DNNModels/unknown.pt")
    one_line_error(run_cli("test", str(case), "--model", "unknown.pt", "--arch", "resnet18"), str(case / "DNNModels/unknown.pt"),
                   "a dict with keys epoch, weights_ema, optimizer", "model_state_dict", "torch.save(model.state_dict(), FILE)")
    one_line_error(run_cli("test", str(case), "--model", "epoch3.pth"), "is a 'model_state_dict' of a training checkpoint", "name its architecture with --arch")
    one_line_error(run_cli("test", str(case), "--model", "epoch3.pth", "--arch", "resnet19"), "--arch resnet19: unknown architecture",
                   "resnet18")


def _sequential() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten(),
                               torch.nn.Linear(128, 16), torch.nn.ReLU(), torch.nn.Linear(16, 8))


def _mobilenet() -> torch.nn.Module:
    torch.manual_seed(0)
    return torchvision.models.mobilenet_v3_small(num_classes=8)


FORMATS = {  # name: (what the user saves, the flags hudd needs to load it); untrained models, so --allow-weak-model
    # (a training checkpoint loads into the same module as its state_dict: test_training_checkpoints_load_...)
    "state_dict": (lambda: _mobilenet().state_dict(), ("--arch", "mobilenet_v3_small")),
    "pickled-torchvision": (_mobilenet, ("--trust-model",)),
    "pickled-sequential": (_sequential, ("--trust-model",)),
}


@pytest.mark.parametrize("form", FORMATS, ids=FORMATS)
def test_the_retrained_model_of_every_format_is_analysed_again(own: Path, tmp_path: Path, form: str):
    """Test, cluster and retrain a model of each format (an untrained mobilenet_v3_small, or a pickled Sequential of one's
    own); the retrained `<model>-hudd.pt` is tested and clustered again without --arch, and a torchvision one loads into
    plain torchvision with README's lines and predicts as hudd does."""
    case = copy_case(own, tmp_path)
    save, flags = FORMATS[form]
    torch.save(save(), case / "DNNModels/mine.pt")
    (case / "DNNModels/resnet18.pt").unlink()
    for command in (["test"], ["cluster", "--method", "naive"],
                    ["retrain", "--budget", "4", "--retrain-epochs", "1", "--runs", "1", "--no-baselines"]):
        result = run_cli(command[0], str(case), *command[1:], *flags, "--allow-weak-model")
        assert result.exit_code == 0, (command, result.output)
    pickled = form == "pickled-sequential"
    suggested = result.stdout.splitlines()[-1]
    assert f"hudd analyze {case} --model mine-hudd.pt" in suggested and "--arch" not in suggested
    assert ("--trust-model" in suggested) == pickled, "the next command loads what was written"
    again = ["--model", "mine-hudd.pt", "--workspace", str(case / "again"), "--allow-weak-model", *(["--trust-model"] if pickled else [])]
    for command in (["test"], ["cluster", "--method", "naive"]):
        result = run_cli(command[0], str(case), *command[1:], *again)
        assert result.exit_code == 0, (command, result.output)
    if pickled:
        return
    model, spec = _from_readme(case / "DNNModels/mine-hudd.pt")
    assert (spec["arch"], spec["channels"], spec["mean"], spec["resize"]) == ("mobilenet_v3_small", 3, [0.485, 0.456, 0.406], "none")
    plain = _plain_predictions(model, case / "DataSets/TestSet", transforms.Normalize(spec["mean"], spec["std"]))
    assert pd.read_csv(case / "again/testResult.csv")["prediction"].tolist() == [spec["classes"][k] for k in plain]


def test_a_model_fed_the_wrong_convention_stops_before_the_heatmaps(own: Path, tmp_path: Path):
    case = copy_case(own, tmp_path)
    wrong = ("--arch", "resnet18", "--normalize", "none")
    result = run_cli("test", str(case), *wrong)
    assert result.exit_code == 0 and "about chance" in result.stderr, "hudd test writes its results and says so"
    for command in (["analyze"], ["heatmaps"], ["cluster", "--method", "naive"]):
        one_line_error(run_cli(*command[:1], str(case), *command[1:], *wrong), str(case / "DNNModels/resnet18.pt"), "about chance",
                       "input convention", "32x32 RGB, mean [0, 0, 0], std [1, 1, 1], resize none", "--normalize imagenet",
                       "--allow-weak-model")
    assert (case / "HUDD/testResult.csv").is_file() and (case / "HUDD/trainResult.csv").is_file(), "nothing computed is lost"
    assert not (case / "HUDD/Heatmaps").exists()
    result = run_cli("cluster", str(case), "--method", "naive", *wrong, "--allow-weak-model")
    assert result.exit_code == 0, result.output
    assert (case / "HUDD/ClusterAnalysis/naive/clusters.csv").is_file()


def test_images_of_another_mode_are_converted_as_imagefolder_converts_them(case: Path):
    """A grayscale model (the tiny case's) and a copy of a test image saved as RGB, RGBA, gray + alpha, palette, 1-bit, CMYK:
    counted in one note; the exact copies get the original's prediction and confidence."""
    folder = case / "DataSets/TestSet/TopLeft"
    original = sorted(folder.glob("*.png"))[0]
    gray = Image.open(original)
    for mode in ("RGB", "RGBA", "LA"):
        gray.convert(mode).save(folder / f"zz-{mode}.png")
    gray.convert("P").save(folder / "zz-P.png")
    gray.convert("1").save(folder / "zz-1.png")
    gray.convert("CMYK").save(folder / "zz-CMYK.jpg")
    result = run_cli("test", str(case), "--force")
    assert result.exit_code == 0, result.output
    assert "note: 6 of 70 TestSet images converted to grayscale" in result.stderr.splitlines()
    results = pd.read_csv(case / "HUDD/testResult.csv").set_index("image")
    first = results.loc[str(original.relative_to(case / "DataSets")), ["prediction", "confidence"]]
    for mode in ("RGB", "RGBA", "LA"):
        assert results.loc[f"TestSet/TopLeft/zz-{mode}.png", ["prediction", "confidence"]].tolist() == first.tolist(), mode


def test_images_of_another_size_need_a_resize_policy(case: Path):
    folder = case / "DataSets/TestSet/TopLeft"
    resized = sorted(folder.glob("*.png"))[:3]
    for path, size in zip(resized, [(40, 40), (28, 36), (64, 48)]):
        Image.open(path).resize(size).save(path)
    one_line_error(run_cli("test", str(case), "--force"), str(case / "DataSets/TestSet"), "3 of 64 images are not 32x32",
                   f"TestSet/TopLeft/{resized[0].name} is 40x40", f"{resized[1].name} is 28x36", "set resize to stretch or crop")
    result = run_cli("test", str(case), "--force", "--resize", "stretch")
    assert result.exit_code == 0, result.output
    assert "note: 3 of 64 TestSet images resized to 32x32 (stretch)" in result.stderr.splitlines()
    result = run_cli("heatmaps", str(case), "--resize", "stretch")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1].endswith("--resize stretch"), "the next command reads the images the same way"


@pytest.mark.parametrize("resize, reference", [
    ("stretch", transforms.Resize((24, 24))),
    ("crop", transforms.Compose([transforms.Resize(24), transforms.CenterCrop(24)])),
])
def test_resize_policies_are_torchvisions(tmp_path: Path, resize: str, reference):
    from hudd.case.images import model_image

    path = tmp_path / "wide.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (30, 45, 3), dtype=np.uint8)).save(path)
    expected = np.asarray(reference(Image.open(path)))
    assert np.array_equal(model_image(path, 3, 24, 24, resize), expected)


@pytest.mark.parametrize("arch", ["efficientnet_b0", "googlenet"])
def test_torchvision_state_dicts_of_many_architectures_load(own: Path, arch: str):
    from hudd.case.data import Case
    from hudd.models.case_model import open_case_model

    folder = own / "DNNModels" / arch
    folder.mkdir()
    torch.manual_seed(0)
    model = torchvision.models.get_model(arch, weights=None, num_classes=8, **({"aux_logits": True, "init_weights": True}
                                                                                if arch == "googlenet" else {}))
    torch.save(model.state_dict(), folder / "model.pt")
    try:
        loaded = open_case_model(Case(own), f"{arch}/model.pt", arch=arch)
    finally:
        shutil.rmtree(folder)
    assert (loaded.spec.arch, loaded.spec.channels, loaded.spec.mean) == (arch, 3, (0.485, 0.456, 0.406))
    assert all(torch.equal(loaded.module.state_dict()[k], v) for k, v in model.state_dict().items())
    assert loaded.module(torch.zeros(1, 3, 32, 32)).shape == (1, 8)


def test_hudd_trains_a_torchvision_architecture(tmp_path: Path):
    """`hudd train --arch mobilenet_v3_small` on grayscale eyes: RGB input (images converted and counted), the
    TrainingSet's own mean/std, and the checkpoint goes back to plain torchvision with README's lines."""
    simulate_case(tmp_path, SimulationSettings(task="gaze", n_train=48, n_test=16, n_improve=0, size=32, seed=0))
    result = run_cli("train", str(tmp_path), "--arch", "mobilenet_v3_small", "--epochs", "1", "--batch-size", "16")
    assert result.exit_code == 0, result.output
    assert "note: 48 of 48 TrainingSet images converted to RGB" in result.stderr.splitlines()
    model, spec = _from_readme(tmp_path / "DNNModels/mobilenet_v3_small.pt")
    assert (spec["channels"], spec["height"], len(spec["classes"])) == (3, 32, 8)
    assert len(set(spec["mean"])) == 1, "gray pixels copied to three channels: one mean"
    assert model.eval()(torch.zeros(1, 3, 32, 32)).shape == (1, 8)
    one_line_error(run_cli("train", str(tmp_path), "--arch", "resnet18", "--channels", "1", "--name", "gray"), "--channels", "3 channels")
