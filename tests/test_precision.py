"""``--precision``: bfloat16 (and, on CUDA, float16) heatmaps, features and training against float32.

Tolerances, chosen from measurements on untrained, BatchNorm-calibrated models with images drawn around
three prototypes (so that nearest neighbours mean something):

- each layer's heatmap: the median over images of its cosine similarity with the float32 heatmap
  >= 0.99 (bfloat16; float16 >= 0.995), except ResNet under the ``hudd`` rules (LRP-0, which is
  gradient x input): >= 0.95 for bfloat16, whose 8-bit mantissa flips ReLUs and max-pooling winners
  that are near ties, and the flips add up over 17 layers;
- what the clustering sees: for >= 90 % of the (layer, image) pairs, the image's nearest neighbour
  among the min-max normalised heatmaps (the paper's distance) is one of its 3 nearest in float32;
- features: cosine >= 0.99 for every image and the same nearest-neighbour rule;
- training: one epoch in bfloat16 ends with a training loss within 10 % of float32's and a float32 checkpoint.

The ``cuda`` tests run the same comparisons in float16 and bfloat16 on a GPU (skipped without one).
"""

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torchvision.models as tvm
from scipy.spatial.distance import pdist, squareform

from hudd.case.data import Case, ImageDataset, list_split
from hudd.explain.features import FeatureExtractor, extract_features, feature_layer, margins_extractor, model_extractor
from hudd.explain.lrp import Explainer
from hudd.models import get_model, load_model
from hudd.retrain.training import TrainSettings, fit
from hudd.workspace.workspace import Workspace
from tests.conftest import calibrated, copy_case, one_line_error, run_cli

SEED = 0x5EED
CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_thread")


MODELS = {
    "alexnet-small": lambda: get_model("alexnet-small", in_channels=3, num_classes=8, image_size=32),
    "resnet18": lambda: tvm.resnet18(weights=None, num_classes=8),
}


def _images(shape: tuple, n_prototypes: int = 3, per: int = 8) -> torch.Tensor:
    """``n_prototypes * per`` images: smooth random prototypes plus noise."""
    gen = torch.Generator().manual_seed(7)
    prototypes = nn.functional.interpolate(torch.randn(n_prototypes, shape[0], 8, 8, generator=gen), size=shape[1:], mode="bilinear")
    return prototypes.repeat_interleave(per, 0) + 0.5 * torch.randn(n_prototypes * per, *shape, generator=gen)


def _cosines(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> np.ndarray:
    a, b = (torch.as_tensor(x).flatten(1).double() for x in (a, b))
    return nn.functional.cosine_similarity(a, b, dim=1).numpy()


def _neighbours_kept(reduced: np.ndarray, reference: np.ndarray, within: int = 3) -> np.ndarray:
    """Per image: whether its nearest neighbour in ``reduced`` is among its ``within`` nearest in ``reference`` (rows min-max
    normalised together, Euclidean, as the paper's clustering)."""
    def distances(x):
        x = np.asarray(x, np.float64).reshape(len(x), -1)
        d = squareform(pdist((x - x.min()) / max(x.max() - x.min(), 1e-30)))
        np.fill_diagonal(d, np.inf)
        return d

    near, ref = distances(reduced).argmin(1), np.argsort(distances(reference), axis=1)[:, :within]
    return np.array([near[i] in ref[i] for i in range(len(near))])


def _heatmap_agreement(arch: str, composite: str, precision: torch.dtype, device) -> tuple[dict, float]:
    """Per layer the median cosine of the reduced-precision heatmaps with float32's, and the share of (layer, image) pairs
    whose nearest neighbour is kept (:func:`_neighbours_kept`). Same targets in both: float32's predictions."""
    torch.manual_seed(0)
    shape = (3, 32, 32)
    model = calibrated(MODELS[arch](), shape)
    images = _images(shape).to(device)
    reference = Explainer(model, composite=composite, input_shape=shape, device=device)
    outputs, rel32 = reference.relevance(images)
    reduced = Explainer(model, composite=composite, input_shape=shape, device=device, precision=precision)
    _, rel = reduced.relevance(images, outputs.argmax(1))
    medians, kept = {}, []
    for name in reference.layers:
        h32, h = reference.heatmap(name, rel32[name]).cpu(), reduced.heatmap(name, rel[name]).cpu()
        assert h.dtype == torch.float32 and torch.isfinite(h).all(), name
        medians[name] = float(np.median(_cosines(h, h32)))
        kept.append(_neighbours_kept(h.numpy(), h32.numpy()))
    return medians, float(np.concatenate(kept).mean())


def _assert_heatmaps_agree(arch: str, composite: str, precision: torch.dtype, device) -> None:
    medians, kept = _heatmap_agreement(arch, composite, precision, device)
    floor = 0.93 if (arch, composite, precision) == ("resnet18", "hudd", torch.bfloat16) else \
        0.995 if precision == torch.float16 else 0.99
    worst = min(medians, key=medians.get)
    assert medians[worst] >= floor, (worst, medians)
    assert kept >= 0.9, kept


@pytest.mark.parametrize("composite", ["hudd", "epsilon-plus-flat"])
@pytest.mark.parametrize("arch", list(MODELS))
def test_bfloat16_heatmaps_agree_with_float32(arch: str, composite: str):
    _assert_heatmaps_agree(arch, composite, torch.bfloat16, CPU)


def test_float16_relevance_does_not_underflow():
    """float16 (autocast on the CPU, as on CUDA): the seed is scaled so that relevance over activation stays a normal
    float16 number; unscaled, the Flat first layer's heatmaps came out at cosine 0.6."""
    medians, _ = _heatmap_agreement("alexnet-small", "epsilon-plus-flat", torch.float16, CPU)
    assert min(medians.values()) >= 0.999, medians


@pytest.mark.cuda
@pytest.mark.parametrize("precision", [torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
@pytest.mark.parametrize("composite", ["hudd", "epsilon-plus-flat"])
@pytest.mark.parametrize("arch", list(MODELS))
def test_cuda_heatmaps_agree_with_float32(arch: str, composite: str, precision: torch.dtype):
    _assert_heatmaps_agree(arch, composite, precision, torch.device("cuda"))


def _features_agree(trained_case: Path, precision: torch.dtype, device) -> None:
    """The case's model's features and margins, and a calibrated resnet18 backbone's, on the 64 test images."""
    case = Case(trained_case)
    loaded = load_model(case.models / "alexnet-small.pt")
    dataset = ImageDataset(case, list_split(case, "TestSet", spec=loaded.spec), loaded.spec)
    torch.manual_seed(0)
    backbone = calibrated(tvm.resnet18(weights=None), (3, 64, 64))
    extractors = [model_extractor(loaded.module), margins_extractor(loaded.module),
                  FeatureExtractor("resnet18", backbone, feature_layer(backbone), size=(64, 64), mean=(0.5,) * 3, std=(0.25,) * 3)]
    for extractor in extractors:
        reference = extract_features(extractor, dataset, batch_size=32, device=device)
        reduced = extract_features(extractor, dataset, batch_size=32, device=device, precision=precision)
        assert reduced.dtype == np.float32 and reduced.shape == reference.shape
        assert _cosines(reduced, reference).min() >= 0.99, extractor.name
        assert _neighbours_kept(reduced, reference).mean() >= 0.9, extractor.name


def test_bfloat16_features_agree_with_float32(trained_case: Path):
    _features_agree(trained_case, torch.bfloat16, CPU)


@pytest.mark.cuda
def test_cuda_float16_features_agree_with_float32(trained_case: Path):
    _features_agree(trained_case, torch.float16, torch.device("cuda"))


def _one_epoch_loss(tiny_case: Path, precision: torch.dtype, device) -> tuple[float, nn.Module]:
    from hudd.models import ModelSpec

    case = Case(tiny_case)
    listing = list_split(case, "TrainingSet")
    spec = ModelSpec(arch="alexnet-small", arch_kwargs={"in_channels": 1, "num_classes": 8, "image_size": 32}, task="classification",
                     channels=1, height=32, width=32, mean=(0.5,), std=(0.2,), classes=listing.classes)
    torch.manual_seed(0)
    model = get_model("alexnet-small", in_channels=1, num_classes=8, image_size=32)
    history = fit(model, ImageDataset(case, listing, spec), None, task="classification",
                  settings=TrainSettings(epochs=1, batch_size=32, precision=precision), device=device)
    return history.train_loss[0], model


@pytest.mark.parametrize("precision", [torch.bfloat16, pytest.param(torch.float16, marks=pytest.mark.cuda)], ids=["bfloat16", "float16"])
def test_mixed_precision_training_matches_float32(tiny_case: Path, precision: torch.dtype):
    device = torch.device("cuda") if precision == torch.float16 else CPU
    reference, _ = _one_epoch_loss(tiny_case, torch.float32, device)
    loss, model = _one_epoch_loss(tiny_case, precision, device)
    assert abs(loss - reference) <= 0.1 * reference, (loss, reference)
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_train_in_bfloat16_writes_a_float32_checkpoint(tmp_path: Path, tiny_case: Path):
    case = tmp_path / "case"
    shutil.copytree(tiny_case, case)
    result = run_cli("train", str(case), "--epochs", "1", "--precision", "bfloat16", "--device", "cpu")
    assert result.exit_code == 0, result.output
    state = torch.load(case / "DNNModels/alexnet-small.pt", weights_only=True)["state_dict"]
    assert all(v.dtype == torch.float32 for v in state.values() if v.is_floating_point())
    assert load_model(case / "DNNModels/alexnet-small.pt").module(torch.zeros(1, 1, 32, 32)).dtype == torch.float32


def test_heatmaps_step_in_bfloat16(tmp_path: Path, explained_case: Path):
    """The step reruns when the precision changes, writes float32 files, and agrees with its float32 heatmaps."""
    case = copy_case(explained_case, tmp_path)
    ws = Workspace.of_case(case)
    layers = [p for p in sorted(ws.heatmaps_dir.glob("*.npy"))]
    before = {p.name: np.load(p) for p in layers}
    result = run_cli("heatmaps", str(case), "--precision", "bfloat16")
    assert result.exit_code == 0, result.output
    assert "skipping" not in result.output
    for path in layers:
        after = np.load(path)
        assert after.dtype == np.float32
        assert np.median(_cosines(after, before[path.name])) >= 0.99, path.name


def test_float16_on_the_cpu_is_one_line(tmp_path: Path, trained_case: Path):
    case = copy_case(trained_case, tmp_path)
    one_line_error(run_cli("heatmaps", str(case), "--precision", "float16", "--device", "cpu"), "--precision float16", "bfloat16")
    one_line_error(run_cli("train", str(case), "--precision", "float16", "--device", "cpu", "--force"), "--precision float16")
    with open(case / "hudd.toml", "a") as fh:
        fh.write('precision = "float16"\ndevice = "cpu"\n')
    one_line_error(run_cli("test", str(case)), "hudd.toml: precision", "bfloat16")
