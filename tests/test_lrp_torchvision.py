"""hudd.explain.lrp on torchvision's architectures: zennit's pixels on ResNet and VGG-BN, every layer of many
architectures, gates and activations, unsupported layers, and the layers left out of the clustering.

Models are untrained (``weights=None``), their BatchNorm not the identity (fresh torchvision models have mean 0,
variance 1, scale 1, shift 0, which hides folding mistakes): drawn at random for the comparisons with zennit, the
statistics of a random batch elsewhere.
"""

import copy
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn
import torchvision.models as tvm
from torchvision.ops.misc import SqueezeExcitation

from hudd.explain.lrp import Explainer, UnsupportedLayer
from hudd.workspace.tables import read_layers
from tests.conftest import calibrated, copy_case, one_line_error, run_cli

zennit = pytest.importorskip("zennit")
from zennit.composites import EpsilonPlusFlat  # noqa: E402
from zennit.layer import Sum  # noqa: E402
from zennit.rules import Norm  # noqa: E402
from zennit.torchvision import ResNetCanonizer, VGGCanonizer  # noqa: E402

SEED = 0x5EED


pytestmark = pytest.mark.usefixtures("one_thread")


_HEADS = {"alexnet", "vgg11_bn"}


def _built(arch: str, **kwargs) -> nn.Module:
    """torchvision's ``arch``, untrained, 4 classes; AlexNet's and VGG's 4096-wide classifiers 64 wide (built on the
    meta device first, so their 100 million weights are never drawn)."""
    if arch not in _HEADS:
        return getattr(tvm, arch)(weights=None, num_classes=4, **kwargs)
    with torch.device("meta"):
        model = getattr(tvm, arch)(weights=None, num_classes=4, **kwargs)
    linears = [m for m in model.classifier if isinstance(m, nn.Linear)]
    widths = [linears[0].in_features] + [64] * (len(linears) - 1) + [4]
    narrow = iter(nn.Linear(a, b) for a, b in zip(widths, widths[1:]))
    model.classifier = nn.Sequential(*(next(narrow) if isinstance(m, nn.Linear) else m for m in model.classifier))
    model.to_empty(device="cpu")
    for module in model.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    return model


def _randomised_norms(model: nn.Module, *, eps: float | None = None) -> nn.Module:
    """BatchNorm running statistics and affine parameters drawn at random (``eps`` replaced when given)."""
    gen = torch.Generator().manual_seed(SEED)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                n, dtype = module.num_features, module.running_mean.dtype
                module.running_mean.copy_(torch.randn(n, generator=gen, dtype=dtype) * 0.5)
                module.running_var.copy_(torch.rand(n, generator=gen, dtype=dtype) * 1.5 + 0.5)
                module.weight.copy_(torch.rand(n, generator=gen, dtype=dtype) * 1.5 + 0.25)
                module.bias.copy_(torch.randn(n, generator=gen, dtype=dtype) * 0.3)
                if eps is not None:
                    module.eps = eps
    return model


def _zennit_pixels(model: nn.Module, images: torch.Tensor, target: torch.Tensor, canonizer) -> torch.Tensor:
    model = copy.deepcopy(model).eval()
    composite = EpsilonPlusFlat(epsilon=1e-6, stabilizer=1e-6, canonizers=[canonizer], layer_map=[(Sum, Norm(stabilizer=1e-12))])
    with composite.context(model) as modified:
        x = images.clone().requires_grad_(True)
        out = modified(x)
        onehot = torch.zeros_like(out)
        onehot[torch.arange(len(out)), target] = 1.0
        (grad,) = torch.autograd.grad(out, x, onehot * out.detach())
    return grad


@pytest.mark.parametrize("arch, canonizer", [("resnet18", ResNetCanonizer), ("resnet50", ResNetCanonizer), ("vgg11_bn", VGGCanonizer)])
def test_pixels_agree_with_zennit(arch: str, canonizer):
    """EpsilonPlusFlat with zennit's canonizers, float64: <= 1e-6 normalised L2 (about 1e-11 in practice).

    Two settings make zennit exact where it is approximate by design: BatchNorm ``eps`` is 0,
    because zennit resets a merged BatchNorm to mean 0, variance 1, which still divides by
    ``sqrt(1 + eps)`` (2.6e-5 off on ResNet-18 otherwise); and zennit's residual ``Sum`` rule gets a
    negligible stabiliser, because hudd splits a sum exactly in proportion to its summands (relevance
    is input x gradient) where zennit adds 1e-6 to the denominator (1.1e-5 off otherwise). The
    agreement then shows that folding inside residual blocks and the proportional split are zennit's.
    """
    torch.manual_seed(SEED)
    model = _randomised_norms(_built(arch).double().eval(), eps=0.0)
    images = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    explainer = Explainer(model, composite="epsilon-plus-flat")
    outputs, ours = explainer.relevance(images)
    oracle = _zennit_pixels(model, images, outputs.argmax(1), canonizer())
    pixels = ours[explainer.all_layers[0]]
    error = float(torch.linalg.norm(pixels - oracle) / torch.linalg.norm(oracle))
    assert error <= 1e-6, error


def test_batchnorm_is_folded_inside_residual_and_mobile_blocks():
    """Every BatchNorm of ResNet-18 and MobileNet v3 follows a convolution: all are folded, outputs unchanged."""
    images = torch.randn(2, 3, 32, 32)
    for arch in ("resnet18", "mobilenet_v3_small"):
        torch.manual_seed(SEED)
        model = _randomised_norms(_built(arch).eval())
        explainer = Explainer(model)
        assert not any(isinstance(m, nn.BatchNorm2d) for m in explainer.model.modules()), arch
        with torch.no_grad():
            torch.testing.assert_close(explainer.model(images), model(images), rtol=1e-4, atol=1e-5)


ARCHS = {
    "alexnet": {}, "vgg11_bn": {}, "resnet18": {}, "resnet50": {}, "resnext50_32x4d": {}, "mobilenet_v2": {},
    "mobilenet_v3_small": {}, "mobilenet_v3_large": {}, "efficientnet_b0": {}, "densenet121": {}, "convnext_tiny": {},
    "regnet_y_400mf": {}, "shufflenet_v2_x0_5": {}, "squeezenet1_1": {}, "mnasnet0_5": {},
    "googlenet": {"aux_logits": False, "init_weights": False},
}
SIZE = {"alexnet": 64, "squeezenet1_1": 64}  # the others take 32 px
CASES = [(arch, "hudd") for arch in ARCHS] + [(arch, "epsilon-plus-flat") for arch in ("mobilenet_v3_small", "efficientnet_b0", "shufflenet_v2_x0_5")]


@pytest.mark.parametrize("arch, composite", CASES)
def test_every_layer_of_torchvision_architectures(arch: str, composite: str):
    """Finite, non-zero relevance at every layer with a heatmap, the outputs those of the user's model, which is
    left bit-identical and without hooks. BatchNorm statistics: those of one random batch."""
    torch.manual_seed(SEED)
    size = SIZE.get(arch, 32)
    model = calibrated(_built(arch, **ARCHS[arch]), (3, size, size))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images = torch.randn(2, 3, size, size)
    explainer = Explainer(model, composite=composite, input_shape=(3, size, size))
    outputs, relevance = explainer.relevance(images)
    assert list(relevance) == explainer.layers and len(explainer.layers) >= 5
    for name, rel in relevance.items():
        assert torch.isfinite(rel).all() and rel.abs().sum() > 0, name
        assert explainer.heatmap(name, rel).shape[1:].numel() > 1, name
    with torch.no_grad():
        reference = model(images)
    torch.testing.assert_close(outputs, reference, rtol=1e-3, atol=1e-4 * float(reference.abs().max()))  # float32 rounding
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_left_out_layers_say_why():
    """ResNet: ``downsample.0`` reads ``conv1``'s input; MobileNet v3: the squeeze-excitation convolutions see 1x1."""
    resnet = Explainer(tvm.resnet18(weights=None, num_classes=4), input_shape=(3, 64, 64))
    assert not resnet.left_out.keys() & set(resnet.layers)
    assert resnet.left_out == {f"layer{i}.0.downsample.0": f"same heatmap as layer{i}.0.conv1 (same input)" for i in (2, 3, 4)}
    mobile = Explainer(tvm.mobilenet_v3_small(weights=None, num_classes=4), input_shape=(3, 64, 64))
    squeeze = [name for name in mobile.all_layers if ".fc1" in name or ".fc2" in name]
    assert squeeze and all(mobile.left_out[name] == "single-value heatmap (1x1 input)" for name in squeeze)
    assert not set(squeeze) & set(mobile.layers)
    assert Explainer(tvm.resnet18(weights=None), layers=["layer2.0.downsample.0"]).layers == ["layer2.0.downsample.0"]


class _GatedNet(nn.Module):
    """Depthwise convolution, squeeze-excitation gate, Hardswish, SiLU, GELU, GroupNorm and a residual sum: bias-free
    where relevance must be conserved."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
        self.se = SqueezeExcitation(8, 4)
        self.act = nn.Sequential(nn.Hardswish(), nn.SiLU(), nn.GELU())
        self.norm = nn.GroupNorm(2, 8, affine=False)
        self.pointwise = nn.Conv2d(8, 8, 1, bias=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 3, bias=False)

    def forward(self, x):
        x = self.stem(x)
        y = self.act(self.se(self.depthwise(x)))
        y = self.pointwise(self.norm(y)) + y
        return self.fc(self.pool(y).flatten(1))


def test_gates_and_activations_pass_relevance_through_the_signal_path():
    """Relevance is conserved through the gate, the activations, the norm and the residual sum (the depthwise
    convolution's input relevance sums to the explained logit); no relevance enters the gate's branch."""
    torch.manual_seed(SEED)
    model = _GatedNet().double().eval()
    images = torch.randn(3, 3, 16, 16, dtype=torch.float64)
    explainer = Explainer(model, composite="hudd", layers=["stem", "depthwise", "se.fc1", "pointwise", "fc"])
    outputs, relevance = explainer.relevance(images)
    logits = outputs.max(dim=1).values
    for name in ("stem", "depthwise", "fc"):
        torch.testing.assert_close(relevance[name].flatten(1).sum(1), logits, rtol=1e-3, atol=0.0, msg=name)
    assert not relevance["se.fc1"].any()


class _Gain(nn.Module):
    def __init__(self):
        super().__init__()
        self.gain = nn.Parameter(torch.ones(1))

    def forward(self, x):
        return torch.tanh(self.gain * x)


def test_an_unsupported_layer_is_named_in_one_line():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), _Gain(), nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(UnsupportedLayer) as caught:
        Explainer(model)
    assert str(caught.value).startswith("layer 1 (_Gain) has parameters") and "\n" not in str(caught.value)


def _pickled(case: Path, module: nn.Module) -> None:
    model = next((case / "DNNModels").glob("*.pt"))
    torch.save(module.eval(), model)


def test_heatmaps_step_lists_left_out_layers_and_the_clustering_skips_them(case: Path):
    """A pickled ResNet-18 on the 32 px gray case: downsample convolutions share conv1's input, layer4.1 sees 1x1."""
    torch.manual_seed(SEED)
    resnet = tvm.resnet18(weights=None, num_classes=8)
    resnet.conv1 = nn.Conv2d(1, 64, 7, 2, 3, bias=False)
    _pickled(case, resnet)
    assert run_cli("test", str(case), "--trust-model").exit_code == 0
    result = run_cli("heatmaps", str(case), "--trust-model")
    assert result.exit_code == 0, result.output
    layers = pd.read_csv(case / "HUDD/Heatmaps/layers.csv", keep_default_na=False)
    left = dict(zip(layers["layer"], layers["left_out"]))
    assert left["layer2.0.downsample.0"] == "same heatmap as layer2.0.conv1 (same input)"
    assert left["layer4.1.conv1"] == "single-value heatmap (1x1 input)" and left["conv1"] == "" and left["fc"] == ""
    assert ("note: heatmaps: 6 of 21 layers left out of the clustering (same heatmap as another layer (same input): 3; "
            "single-value heatmap (1x1 input): 3)") in result.stderr
    assert not (case / "HUDD/Heatmaps/layer2.0.downsample.0.npy").exists()
    clustered = read_layers(SimpleNamespace(heatmap_layers=case / "HUDD/Heatmaps/layers.csv"))  # what `hudd cluster` reads
    assert list(clustered["layer"]) == [name for name, why in left.items() if not why]


def test_heatmaps_step_refuses_an_unsupported_layer_in_one_line(case: Path):
    _pickled(case, nn.Sequential(nn.Conv2d(1, 4, 3), _Gain(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 8)))
    assert run_cli("test", str(case), "--trust-model").exit_code == 0
    one_line_error(run_cli("heatmaps", str(case), "--trust-model"), "layer 1 (_Gain) has parameters", "--method joint")


THROUGH_HUDD = ["resnet18", "resnet50", "resnext50_32x4d", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large",
                "efficientnet_b0", "densenet121", "convnext_tiny", "regnet_y_400mf", "shufflenet_v2_x0_5", "mnasnet0_5", "googlenet"]


@pytest.fixture(scope="module")
def rgb_case(tmp_path_factory) -> Path:
    """A 32 px RGB signs case of a few images (no model). Read only: copy it."""
    from hudd.sim import SimulationSettings, simulate_case

    case = tmp_path_factory.mktemp("rgb") / "case"
    simulate_case(case, SimulationSettings(task="signs", n_train=16, n_test=12, n_improve=0, size=32, seed=SEED))
    return case


@pytest.mark.parametrize("arch", THROUGH_HUDD)
def test_bare_state_dicts_of_torchvision_architectures_get_heatmaps(rgb_case: Path, tmp_path: Path, arch: str):
    """`hudd test` and `hudd heatmaps --arch NAME` on an untrained model's state_dict (BatchNorm statistics of one
    batch): every analysed layer's heatmaps finite and non-zero for every error image."""
    case = copy_case(rgb_case, tmp_path)
    torch.manual_seed(SEED)
    (case / "DNNModels").mkdir(exist_ok=True)
    model = calibrated(getattr(tvm, arch)(weights=None, num_classes=8, **ARCHS[arch]), (3, 32, 32))
    torch.save(model.state_dict(), case / "DNNModels/model.pt")
    flags = ("--arch", arch, "--allow-weak-model")
    assert run_cli("test", str(case), *flags).exit_code == 0
    result = run_cli("heatmaps", str(case), *flags)
    assert result.exit_code == 0, result.output
    layers = pd.read_csv(case / "HUDD/Heatmaps/layers.csv", keep_default_na=False)
    analysed = layers.loc[layers["left_out"] == "", "layer"]
    assert len(analysed) >= 5
    for name in analysed:
        heatmaps = np.load(case / f"HUDD/Heatmaps/{name}.npy")
        assert heatmaps.shape[0] > 0 and np.isfinite(heatmaps).all(), name
        assert (np.abs(heatmaps).reshape(len(heatmaps), -1).sum(1) > 0).all(), name


def test_blank_heatmaps_are_named(rgb_case: Path, tmp_path: Path):
    """A model whose output is 0 (its last layer zero, as a model saved before training could be) gives relevance zero
    at every layer: `hudd heatmaps` says so, naming an image, instead of writing blank heatmaps silently."""
    case = copy_case(rgb_case, tmp_path)
    (case / "DNNModels").mkdir(exist_ok=True)
    model = calibrated(tvm.resnet18(weights=None, num_classes=8), (3, 32, 32))
    nn.init.zeros_(model.fc.weight)
    nn.init.zeros_(model.fc.bias)
    torch.save(model.state_dict(), case / "DNNModels/model.pt")
    flags = ("--arch", "resnet18", "--allow-weak-model")
    assert run_cli("test", str(case), *flags).exit_code == 0
    result = run_cli("heatmaps", str(case), *flags)
    assert result.exit_code == 0, result.output
    assert "relevance zero at every layer" in result.output and "TestSet" in result.output
