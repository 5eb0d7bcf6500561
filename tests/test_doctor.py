"""Model Doctor: the aggregation on a model with a known answer, the constraint loss, the simulator's masks,
``hudd doctor`` end to end, a treated retraining, and the bad inputs."""

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn

from hudd.config import load_config
from hudd.case.data import Case, list_split, mask_path, read_image, read_mask, read_masks
from hudd.retrain.doctor import (DoctorConstraint, background_masks, channel_gradients, class_channel_correlation, default_layers, diagnose,
                         doctor_loss, image_channel_correlation, normalise)
from hudd.core.errors import HuddError
from hudd.steps import doctor as doctor_step
from hudd.steps import retrain as retrain_step
from hudd.steps.common import open_context, resolve_doctor_layers
from hudd.retrain.training import TrainSettings, fit
from tests.conftest import WEAK_OK, copy_case, run_cli

SEED = 0xD0C


class Wired(nn.Module):
    """Three classes, three channels: class c's logit is ``w_c`` times the spatial mean of channel c of ``conv``."""

    def __init__(self, weights=(1.0, 2.0, 0.5)):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, kernel_size=3, padding=1)
        self.mix = nn.Conv2d(3, 3, kernel_size=1, bias=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        with torch.no_grad():
            self.mix.weight.copy_(torch.diag(torch.tensor(weights))[:, :, None, None])

    def forward(self, x):
        return self.flatten(self.pool(self.mix(self.conv(x))))


def _batches(n=12, seed=SEED):
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 1, 6, 6, generator=generator)
    classes = torch.arange(n) % 3
    return [(images[:5], classes[:5]), (images[5:], classes[5:])]


def test_a_class_wired_to_one_channel_shows_that_channel():
    torch.manual_seed(SEED)
    model = Wired()
    layers = default_layers(model)
    assert layers == ["conv", "mix"]
    aggregates = class_channel_correlation(model, _batches(), n_classes=3, layers=layers, n_draws=4, delta=0.3,
                                           generator=torch.Generator().manual_seed(SEED))
    # d y_c / d mix_k = [k == c] / 36 at each of 36 positions; d y_c / d conv_k = w_c [k == c] / 36
    assert np.allclose(aggregates["mix"], np.eye(3), atol=1e-6)
    assert np.allclose(aggregates["conv"], np.diag([1.0, 2.0, 0.5]), atol=1e-6)
    assert np.allclose(normalise(aggregates["conv"]), np.eye(3))
    per_image = image_channel_correlation(model, _batches(), layers=["conv"], n_draws=2, delta=0.1)
    assert per_image["conv"].shape == (12, 3) and np.allclose(per_image["conv"].argmax(1), np.arange(12) % 3)


def test_noise_is_seeded_and_reaches_the_gradients_through_a_nonlinearity():
    torch.manual_seed(SEED)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.Flatten(1), nn.Linear(144, 3))
    images, classes = _batches()[0]

    def run(seed, delta=0.5):
        return image_channel_correlation(model, [(images, classes)], layers=["0"], n_draws=3, delta=delta,
                                         generator=torch.Generator().manual_seed(seed))["0"]

    assert np.array_equal(run(1), run(1)), "same seed, same numbers"
    assert not np.array_equal(run(1), run(2))
    outputs, grads = channel_gradients(model, images, torch.stack([classes, (classes + 1) % 3]), layers=["0", "2"], n_draws=3, delta=0.0)
    assert outputs.shape == (2 * 3 * 5, 3) and grads["0"].shape == (2, 3, 5, 4, 6, 6)
    assert torch.equal(grads["2"][0, 0], grads["2"][0, 2]), "without noise every draw is the same"


class Residual(nn.Module):
    """A skip connection around ``b``: its output is added to ``a``'s, computed before it."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 4, 3, padding=1)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(4, 3))

    def forward(self, x):
        h = self.a(x)
        return self.head(h + self.b(h))


def test_a_skip_connection_around_the_layer_repeats_the_input_instead():
    torch.manual_seed(SEED)
    model = Residual()
    images, classes = _batches()[0]
    outputs, grads = channel_gradients(model, images, classes[None], layers=["b"], n_draws=3, delta=0.0)
    assert outputs.shape == (15, 3) and grads["b"].shape == (1, 3, 5, 4, 6, 6)
    # b is followed by linear layers only: d y_c / d b_k = W_ck / 36 at every position
    expected = model.head[2].weight[classes].detach()[:, :, None, None].expand(5, 4, 6, 6) / 36
    assert torch.allclose(grads["b"][0, 1], expected, atol=1e-7)


def test_diagnosis_ranks_the_departing_channels():
    aggregates = np.array([[4.0, 2.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]])
    correlation = np.array([[2.0, 1.0, 0.0, 1.6], [0.0, 0.0, 3.0, 3.0]])  # image 0 leans on channel 3, which class 0 does not use
    channels, departure = diagnose(correlation, np.array([0, 1]), aggregates, top=2)
    assert channels[0].tolist() == [3, 0] and departure[0, 0] == pytest.approx(0.8)
    assert np.allclose(departure[1], 0.0)


def _gradients(batch=2, channels=3, size=4, draws=2):
    return torch.zeros(draws, batch, channels, size, size)


def test_constraint_is_zero_without_gradients_and_grows_with_off_class_gradients():
    below = {"l": torch.tensor([[False, True, True], [False, True, True]])}  # channel 0 is the predicted class's own
    g_n, g_s = _gradients(), _gradients()
    assert float(doctor_loss({"l": g_n}, {"l": g_s}, below)) == 0.0
    own = g_n.clone()
    own[:, :, 0] = 1.0
    assert float(doctor_loss({"l": own}, {"l": g_s}, below)) == 0.0, "gradients on the class's own channel are not penalised"
    losses = []
    for value in (0.5, 1.0, 2.0):
        off = own.clone()
        off[:, 0, 1] = -value  # off-class channel of image 0 (sign ignored)
        losses.append(float(doctor_loss({"l": off}, {"l": g_s}, below)))
    assert 0 < losses[0] < losses[1] < losses[2]
    assert losses[1] == pytest.approx(16 * 1.0 / 2), "sum over 16 positions, mean over draws, mean over 2 images"
    second = g_s.clone()
    second[:, 1, 0] = 1.0  # the second-ranked class is penalised on every channel
    assert float(doctor_loss({"l": own}, {"l": second}, below)) == pytest.approx(8.0)
    assert float(doctor_loss({"l": own}, {"l": second}, below, scale={"l": 4.0})) == pytest.approx(2.0)
    background = {"l": torch.zeros(2, 4, 4)}
    background["l"][0, 0, 0] = 1.0
    assert float(doctor_loss({"l": own}, {"l": g_s}, below, background=background)) == pytest.approx(0.5), \
        "space-wise: gradient in the background cell of image 0"


def test_background_mask_is_the_complement_of_the_dilated_foreground():
    foreground = torch.zeros(1, 9, 9, dtype=torch.bool)
    foreground[0, 4, 4] = True
    background = background_masks(foreground, pixels=2)
    assert background.sum() == 81 - 25 and background[0, 2:7, 2:7].sum() == 0


def test_the_constraint_trains_through_fit_and_is_seeded():
    torch.manual_seed(SEED)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
    images = torch.randn(16, 1, 6, 6, generator=torch.Generator().manual_seed(SEED))
    targets = torch.arange(16) % 3
    aggregates = {"0": np.eye(3, 4, dtype=np.float32) + 0.1}  # the gradient at conv 0 depends on the weights of conv 2
    background = torch.zeros(16, 6, 6, dtype=torch.uint8)
    background[:, 0] = 1
    constraint = DoctorConstraint(aggregates, n_draws=2, background=background, seed=3)
    outputs = model(images)
    loss = constraint(model, images, outputs, targets, torch.arange(16))
    loss.backward()
    assert float(loss.detach()) > 0 and model[2].weight.grad.abs().sum() > 0, "the loss is differentiable w.r.t. the weights"
    again = DoctorConstraint(aggregates, n_draws=2, background=background, seed=3)(model, images, model(images), targets, torch.arange(16))
    assert float(again.detach()) == float(loss.detach())

    data = torch.utils.data.TensorDataset(images, targets, torch.arange(16))
    weights = []
    for extra in (None, DoctorConstraint(aggregates, n_draws=2, weight=5.0, seed=3)):
        torch.manual_seed(SEED)
        trained = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        history = fit(trained, data, None, task="classification", settings=TrainSettings(epochs=2, batch_size=8), device=torch.device("cpu"),
                      extra_loss=extra)
        assert np.isfinite(history.train_loss).all()
        weights.append(torch.cat([p.detach().flatten() for p in trained.parameters()]))
    assert not torch.equal(weights[0], weights[1])


def test_simulate_writes_masks_aligned_with_the_eye(tiny_case: Path):
    case = Case(tiny_case)
    params = pd.read_csv(tiny_case / "DataSets/TrainingSet/params.csv")
    listing = list_split(case, "TrainingSet")
    assert len(listing) == len(params), "masks/ is not listed as a class"
    inside = []
    for image_id, cause in zip(listing.ids, params.set_index("image").loc[[i.split("/", 1)[1] for i in listing.ids], "cause"]):
        mask = read_mask(case, image_id)
        assert mask is not None and mask.shape == (32, 32)
        assert set(np.unique(read_image(mask_path(case, image_id)))) <= {0, 255}
        if cause == "none":  # an open, well-lit eye: its darkest pixel is the pupil
            image = read_image(case.datasets / image_id)[:, :, 0]
            inside.append(mask[np.unravel_index(np.argmin(image), mask.shape)])
    assert len(inside) > 100 and np.mean(inside) > 0.95, "the pupil lies inside the mask"
    assert read_mask(case, "TrainingSet/TopLeft/does-not-exist.png") is None


def test_masks_are_resized_as_their_images_are(tmp_path: Path):
    """A 64x48 image with its 64x48 mask, read for a 32x32 model: the mask stretched or cropped as the image."""
    import imageio.v3 as iio

    from hudd.case.images import model_image

    folder = tmp_path / "DataSets/TrainingSet"
    (folder / "a").mkdir(parents=True)
    (folder / "masks/a").mkdir(parents=True)
    rows, cols = np.mgrid[:48, :64]
    iio.imwrite(folder / "a/0.png", ((cols < 4) * 255).astype(np.uint8))
    iio.imwrite(folder / "masks/a/0.png", ((cols < 4) * 255).astype(np.uint8))
    iio.imwrite(folder / "masks/a/1.png", np.zeros((10, 10), np.uint8))
    iio.imwrite(folder / "a/1.png", np.zeros((48, 64), np.uint8))
    case = Case(tmp_path)
    for resize in ("stretch", "crop"):
        masks, present = read_masks(case, ["TrainingSet/a/0.png"], height=32, width=32, resize=resize)
        image = model_image(folder / "a/0.png", 1, 32, 32, resize)[:, :, 0]
        assert present.all() and np.array_equal(masks[0], image > 127), resize
        assert masks[0].any() == (resize == "stretch"), "the crop cuts the left edge off"
    with pytest.raises(HuddError, match=r"masks/a/1.png: mask is 10x10, its image is 64x48; write the mask at the image's size"):
        read_masks(case, ["TrainingSet/a/1.png"], height=32, width=32, resize="stretch")


def test_a_simulation_made_before_masks_gets_them_and_keeps_its_images(tmp_path: Path, tiny_case: Path):
    import json

    from hudd.sim import simulate_case
    from tests.conftest import TINY

    case = tmp_path / "case"
    shutil.copytree(tiny_case, case)
    for split in ("TrainingSet", "TestSet", "ImprovementSet"):
        shutil.rmtree(case / "DataSets" / split / "masks")
    record = case / "DataSets/simulation.json"
    json_record = json.loads(record.read_text())
    record.write_text(json.dumps({k: v for k, v in json_record.items() if k != "format"}))  # as written before masks
    images = {p: p.stat().st_mtime_ns for p in (case / "DataSets/TestSet").rglob("*.png")}
    assert simulate_case(case, TINY) is False, "the images are not written again"
    assert {p: p.stat().st_mtime_ns for p in images} == images
    for folder in ("TrainingSet/masks", "TestSet/masks", "ImprovementSet/masks"):
        def masks(root):
            return {str(p.relative_to(root)): p.read_bytes() for p in (root / "DataSets" / folder).rglob("*.png")}
        assert masks(case) == masks(tiny_case) and masks(case), "the same masks as a fresh simulation"
    assert json.loads(record.read_text()) == json_record
    assert simulate_case(case, TINY) is False
    with pytest.raises(HuddError, match="already holds"):
        simulate_case(case, TINY.__class__(**{**TINY.__dict__, "seed": 5}))


@pytest.fixture(scope="module")
def assigned_source(tmp_path_factory, assigned_case: Path) -> Path:
    """The session's assigned case with a small doctor setting (read-only)."""
    case = copy_case(assigned_case, tmp_path_factory.mktemp("doctor"))
    (case / "hudd.toml").write_text(WEAK_OK + "batch_size = 32\ndoctor_per_class = 6\ndoctor_draws = 2\ndoctor_draws_train = 1\nretrain_epochs = 1\n")
    return case


@pytest.fixture
def assigned(assigned_source: Path, tmp_path: Path) -> Path:
    """A writable copy of ``assigned_source``: each test starts from the same workspace, whatever ran before."""
    return copy_case(assigned_source, tmp_path)


def _digest(folder: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def test_doctor_step_end_to_end(assigned: Path):
    config = load_config(assigned, {})
    with open_context(assigned, config, command="test") as ctx:
        outcome = doctor_step.run(ctx)
        assert outcome.ran
        layers = outcome.layers["layer"].tolist()
        assert layers == ["features.8", "features.10"] and outcome.layers["alias"].tolist() == ["conv4", "conv5"]
        for name, channels in zip(layers, outcome.layers["channels"]):
            assert outcome.aggregates[name].shape == (8, channels) and (outcome.aggregates[name] >= 0).all()
            table = pd.read_csv(ctx.workspace.doctor_csv(name))
            assert len(table) == 8 * channels and table.groupby("class")["normalised"].max().le(1.0).all()
            assert ctx.workspace.doctor_png(name).is_file()
        assert outcome.images.groupby("label").size().max() <= 6
        errors = (~pd.read_csv(ctx.workspace.test_result)["correct"]).sum()
        assert len(outcome.diagnosis) == errors * 2 * 5 and set(outcome.diagnosis["kind"]) <= {"extra", "missing"}
        text = doctor_step.summary(outcome, v=config.doctor_v, folder=ctx.workspace.doctor_dir)
        assert "conv5" in text and "error-inducing test images" in text and str(ctx.workspace.doctor_dir) in text
        first = doctor_step.run(ctx)
        assert not first.ran, "current: skipped"
        before = _digest(ctx.workspace.doctor_dir)
        assert doctor_step.run(ctx, force=True).ran
        assert _digest(ctx.workspace.doctor_dir) == before, "same seed, same files"


def test_treated_retraining_adds_doctor_and_hudd_plus_doctor(assigned: Path):
    config = load_config(assigned, {"treatment": "doctor", "runs": 1})
    with open_context(assigned, config, command="test") as ctx:
        doctor_step.run(ctx)
        outcome = retrain_step.run(ctx)
    metrics = outcome.metrics
    assert metrics["method"].tolist() == ["original", "hudd", "B1", "B2", "doctor", "hudd+doctor"]
    assert metrics["accuracy"].between(0, 1).all()
    extra = metrics.set_index("method")["n_extra"]
    assert extra["doctor"] == 0 and extra["hudd+doctor"] == extra["hudd"]
    comparison = outcome.comparison.set_index("method")
    assert {"A12_vs_B1", "A12_vs_B2", "A12_vs_hudd"} <= set(comparison.columns)
    assert np.isfinite(comparison.loc["doctor", "A12_vs_hudd"]) and np.isnan(comparison.loc["hudd", "A12_vs_hudd"])
    assert np.isfinite(comparison.loc["hudd+doctor", "A12_vs_B1"])
    manifest = ctx.workspace.step_entry("retrain")
    assert manifest["config"]["doctor_spatial"] == "auto" and "masks" in manifest["inputs"], "the tiny case has masks: space-wise on"


def test_the_treated_retraining_step_alone_says_to_run_the_diagnosis_first(assigned: Path):
    case = assigned
    assert "doctor" not in json.loads((case / "HUDD/manifest.json").read_text())["steps"]
    config = load_config(case, {"treatment": "doctor", "runs": 1})
    with open_context(case, config, command="test") as ctx, pytest.raises(HuddError) as caught:
        retrain_step.run(ctx)
    message = str(caught.value)
    assert message.startswith(str(ctx.workspace.doctor_dir)) and f"run `hudd doctor {case}` first" in message and "\n" not in message


def test_space_wise_constraint_without_masks_says_where_they_go(tmp_path: Path, trained_case: Path):
    case = tmp_path / "case"
    shutil.copytree(trained_case, case)
    shutil.rmtree(case / "DataSets/TrainingSet/masks")
    config = load_config(case, {"treatment": "doctor", "doctor_spatial": "on"})
    with open_context(case, config, command="test") as ctx, pytest.raises(HuddError) as caught:
        retrain_step.run(ctx)
    message = str(caught.value)
    assert message.startswith(str(case / "DataSets/TrainingSet/masks")) and "--doctor-spatial off" in message
    assert "\n" not in message


def test_doctor_needs_a_classifier_and_known_layers(trained_case: Path):
    config = load_config(trained_case, {"doctor_layers": "classifier.1"})
    with open_context(trained_case, config, command="test") as ctx, pytest.raises(HuddError) as caught:
        resolve_doctor_layers(ctx)
    assert "alexnet-small.pt" in str(caught.value) and "features.10" in str(caught.value)


def test_doctor_and_the_treated_retraining_through_the_cli(assigned: Path):
    result = run_cli("doctor", str(assigned))
    assert result.exit_code == 0, result.output
    assert "conv5" in result.output and (assigned / "HUDD/Doctor/diagnosis.csv").is_file()
    result = run_cli("retrain", str(assigned), "--treatment", "doctor", "--doctor-spatial", "off")
    assert result.exit_code == 0, result.output
    assert "hudd+doctor" in result.output
    assert {"doctor", "hudd+doctor"} <= set(pd.read_csv(assigned / "HUDD/Retrain/metrics.csv")["method"])
    assert run_cli("report", str(assigned)).exit_code == 0
    assert "HUDD + Model Doctor" in (assigned / "HUDD/report.html").read_text()
