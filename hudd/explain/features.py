"""Feature vectors of images for the black-box pipeline: a network's penultimate layer, batch by batch.

Notation: ``n`` images, ``d`` features. A :class:`FeatureExtractor` is a network, the layer whose
*input* is the feature vector, and how the images are prepared for the network:

- ``model`` (:func:`model_extractor`): the case's own model, fed exactly as in ``hudd test``;
  the feature layer is its last ``nn.Linear`` (the classifier's input, the penultimate layer), or
  for models without one (KPNet) its last convolution;
- a torchvision backbone by name (:func:`backbone_extractor`: ``resnet18``, ``mobilenet_v3_small``,
  ``efficientnet_b0``, ...), built with ``weights=None`` and loaded from a weights file the user
  supplies (hudd downloads nothing); its last ``nn.Linear`` gives the pooled penultimate features.
  Images are scaled to [0, 1], grayscale repeated to 3 channels, resized (bilinear, no crop, so
  nothing at the border is lost) to the backbone's input size and normalised with its mean/std,
  both read from torchvision's weights metadata (ImageNet's for every classification backbone);
- ``efficientnet_lite0`` or ``efficientnet_lite0:<block>`` (:func:`pretrained_extractor`): the
  ImageNet EfficientNet-Lite0 of the extra ``hudd[pretrained]`` (weights installed with it, so
  nothing to supply), pooled output of one of its blocks ``0..15`` (``16``: the head), images
  resized to 128 px and scaled to [-1, 1] as the TensorFlow original.

- ``margins`` (:func:`margins_extractor`): the case's model's *outputs* as logit margins, the top
  logit minus each other logit, largest first (``C - 1`` numbers for ``C`` classes). They hold how
  sure the model is and how its doubt is split, and no class identity, so errors of one kind
  (an ambiguous input, a confident confusion) come together whatever the classes involved.

Extractors joined with ``+`` (``efficientnet_lite0+margins``, :func:`make_extractors`) give one
block of features each, batch by batch from :func:`block_batches`; the clustering weighs the blocks
equally (:meth:`hudd.cluster.feature_space.FeatureSpace.fit`).

"Last" is the order of ``named_modules()``, which is the order of the forward pass in
torchvision's and hudd's architectures. A 4-D feature input ``(n, C, H, W)`` is global-average
pooled to ``(n, C)``. :func:`extract_features` runs any extractor on a data set; a new extractor
(a pretrained EfficientNet-Lite0, say) is one more builder returning a :class:`FeatureExtractor`.
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

from ..case.data import ImageDataset, make_loader
from ..config import IMAGENET_MEAN, IMAGENET_STD
from ..core.errors import HuddError, SettingError
from ..core.precision import autocast, wide
from ..models.architectures import torchvision_classifiers
from ..models.checkpoint import weights_in
from ..models.predictions import check_finite
from ..core.progress import progress

__all__ = ["FeatureExtractor", "feature_layer", "model_extractor", "margins_extractor", "backbone_extractor", "pretrained_extractor",
           "make_extractor", "make_extractors", "list_backbones", "extract_features", "feature_batches", "block_batches", "logit_margins",
           "MODEL", "MARGINS", "PRETRAINED"]

MODEL = "model"  # the extractor name for the case's own model
MARGINS = "margins"  # the case's model's logit margins
OUTPUTS = "outputs"  # the "layer" of an extractor that takes the network's outputs
PRETRAINED = "efficientnet_lite0"  # the ImageNet backbone shipped by the extra hudd[pretrained]
PRETRAINED_BLOCK = 14  # its default feature block (chosen on the development seeds: scripts/eval_rootcause.py, README)
PRETRAINED_SIZE = 128  # its input side in pixels (the error images are resized to it)
_SHOWN_KEYS = 3  # keys named in a mismatch message, per kind


@dataclasses.dataclass
class FeatureExtractor:
    """A network whose ``layer`` input is the feature vector, and how images are prepared for it.

    ``size`` (height, width), ``mean`` and ``std`` are set for backbones that take [0, 1] RGB images
    resized and normalised their own way; ``None`` feeds the images as the case's model takes them.
    """

    name: str
    module: nn.Module
    layer: str
    size: tuple[int, int] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    weights: Path | None = None

    @property
    def takes_outputs(self) -> bool:
        """True when the features come from the network's outputs, not from a layer's input."""
        return self.layer == OUTPUTS

    def prepare_dataset(self, dataset: ImageDataset) -> ImageDataset:
        """The data set normalised as this extractor expects (pixels in [0, 1] for a backbone)."""
        if self.mean is None:
            return dataset
        channels = dataset.spec.channels
        if channels not in (1, 3):
            raise HuddError(f"{dataset.path(0) if len(dataset) else dataset.case.datasets}: {dataset.spec.describe_input()} "
                            f"images; the {self.name} backbone takes grayscale or RGB; use --extractor {MODEL}")
        unit = dataclasses.replace(dataset.spec, mean=(0.0,) * channels, std=(1.0,) * channels)
        return dataset.with_spec(unit, model_name=self.name)

    def prepare_batch(self, images: torch.Tensor) -> torch.Tensor:
        """A batch of the prepared data set as the network's input."""
        if self.mean is None:
            return images
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        if tuple(images.shape[2:]) != self.size:
            images = F.interpolate(images, size=self.size, mode="bilinear", align_corners=False, antialias=True)
        mean = torch.tensor(self.mean, dtype=images.dtype, device=images.device)[:, None, None]
        std = torch.tensor(self.std, dtype=images.dtype, device=images.device)[:, None, None]
        return ((images - mean) / std).contiguous(memory_format=torch.channels_last)


def feature_layer(module: nn.Module) -> str:
    """Name of the layer whose input is the feature vector: the last Linear, else the last convolution.

    Raises
    ------
    ValueError
        The module has neither.
    """
    for kinds in ((nn.Linear,), (nn.modules.conv._ConvNd,)):
        names = [name for name, sub in module.named_modules() if isinstance(sub, kinds)]
        if names:
            return names[-1]
    raise ValueError(f"{type(module).__name__} has no Linear or convolution layer to take features from")


def model_extractor(module: nn.Module) -> FeatureExtractor:
    """The case's model, its penultimate layer (see :func:`feature_layer`)."""
    try:
        return FeatureExtractor(MODEL, module, feature_layer(module))
    except ValueError as exc:
        raise SettingError("extractor", f"{MODEL}: {exc}; choose a torchvision backbone with --extractor NAME --weights FILE") from None


def margins_extractor(module: nn.Module) -> FeatureExtractor:
    """The case's model, its outputs as logit margins (see :func:`logit_margins`)."""
    return FeatureExtractor(MARGINS, module, OUTPUTS)


def logit_margins(logits: torch.Tensor) -> torch.Tensor:
    """``(n, C)`` logits -> ``(n, C - 1)``: the top logit minus each other logit, smallest margin first."""
    ordered = logits.flatten(1).sort(dim=1, descending=True).values
    return ordered[:, :1] - ordered[:, 1:]


def list_backbones() -> list[str]:
    """The torchvision classification backbones that can be named as an extractor."""
    return list(torchvision_classifiers())


def _read_state(path: Path) -> dict:
    """A state_dict from ``path`` (``torch.load(weights_only=True)``), a bare one or a training checkpoint's."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise HuddError(f"{path}: no such weights file; pass an existing --weights FILE") from None
    except Exception as exc:  # torch raises many types for a file that is not a checkpoint
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise HuddError(f"{path}: cannot read as PyTorch weights ({reason}); save the backbone's state_dict with torch.save") from None
    state, _ = weights_in(state, path)
    return state


def _keys(keys: list[str]) -> str:
    return ", ".join(keys[:_SHOWN_KEYS]) + (f" and {len(keys) - _SHOWN_KEYS} more" if len(keys) > _SHOWN_KEYS else "")


def _mismatch(expected: dict, found: dict) -> str:
    """What keeps ``found`` from loading strictly into a module with state ``expected`` ('' when it fits)."""
    problems = []
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    shapes = [k for k in expected if k in found and tuple(found[k].shape) != tuple(expected[k].shape)]
    if missing:
        problems.append(f"missing {_keys(missing)}")
    if unexpected:
        problems.append(f"unexpected {_keys(unexpected)}")
    if shapes:
        key = shapes[0]
        problems.append(f"{key} is {list(found[key].shape)} in the file, {list(expected[key].shape)} in the backbone"
                        + (f" (and {len(shapes) - 1} more shapes differ)" if len(shapes) > 1 else ""))
    return "; ".join(problems)


def _build_backbone(name: str, state: dict) -> nn.Module:
    """Backbone ``name`` with ``weights=None``, its classifier sized as in ``state`` (a fine-tuned head loads too)."""
    module = torchvision.models.get_model(name, weights=None)
    head = state.get(f"{feature_layer(module)}.weight")
    if head is not None and head.dim() == 2 and head.shape[0] != module.get_submodule(feature_layer(module)).out_features:
        module = torchvision.models.get_model(name, weights=None, num_classes=int(head.shape[0]))
    return module


def _input_transform(name: str) -> tuple[tuple[int, int], tuple, tuple]:
    """Input size, mean and std from torchvision's weights metadata (no download); ImageNet's 224 px by default."""
    try:
        preset = torchvision.models.get_model_weights(name).DEFAULT.transforms()
        side = int(preset.crop_size[0])
        return (side, side), tuple(preset.mean), tuple(preset.std)
    except (ValueError, AttributeError, IndexError):
        return (224, 224), IMAGENET_MEAN, IMAGENET_STD


def backbone_extractor(name: str, weights: Path) -> FeatureExtractor:
    """Torchvision backbone ``name`` loaded strictly from the state_dict in ``weights``.

    Raises
    ------
    HuddError
        Unknown backbone, unreadable file, or weights that do not fit (the message names the file and
        the first missing, unexpected or mis-shaped keys).
    """
    known = list_backbones()
    if name not in known:
        examples = ", ".join(n for n in ("resnet18", "mobilenet_v3_small", "efficientnet_b0") if n in known)
        raise SettingError("extractor", f"{name}: unknown; use {MODEL} or a torchvision backbone such as {examples} "
                        f"({len(known)} known: torchvision.models.list_models())")
    weights = Path(weights)
    state = _read_state(weights)
    module = _build_backbone(name, state)
    problem = _mismatch(module.state_dict(), state)
    if problem:
        raise HuddError(f"{weights}: weights do not fit torchvision {name} ({problem}); "
                        f"pass a state_dict saved from a {name}, or name its architecture with --extractor")
    module.load_state_dict(state, strict=True)
    size, mean, std = _input_transform(name)
    return FeatureExtractor(name, _channels_last(module), feature_layer(module), size=size, mean=mean, std=std, weights=weights)


def _channels_last(module: nn.Module) -> nn.Module:
    """A backbone in eval mode with channels-last weights (its inputs are made channels-last too,
    :meth:`FeatureExtractor.prepare_batch`): EfficientNet-Lite0's depthwise convolutions ran 1.4x
    faster so on a 2-core CPU, and it is the layout cuDNN prefers."""
    return module.eval().to(memory_format=torch.channels_last)


def pretrained_extractor(block: int = PRETRAINED_BLOCK, *, weights: Path | None = None) -> FeatureExtractor:
    """EfficientNet-Lite0 with ImageNet weights (the extra's file unless ``weights``), pooled output of ``block``.

    The features are the input of the module after the block (``_blocks.<block + 1>``, or
    ``_conv_head`` after the last block, ``_fc`` for the head), so :func:`extract_features`'
    hook takes them like any other extractor's.
    """
    from ..models.efficientnet_lite import BLOCKS, INPUT_MEAN, INPUT_STD, load_pretrained_lite0

    if not 0 <= block <= BLOCKS:
        raise SettingError("extractor", f"{PRETRAINED}:{block}: blocks are 0..{BLOCKS - 1}, {BLOCKS} for the head")
    layer = f"_blocks.{block + 1}" if block < BLOCKS - 1 else ("_conv_head" if block == BLOCKS - 1 else "_fc")
    module = load_pretrained_lite0(weights)
    side = PRETRAINED_SIZE
    return FeatureExtractor(PRETRAINED, _channels_last(module), layer, size=(side, side), mean=(INPUT_MEAN,) * 3, std=(INPUT_STD,) * 3,
                            weights=Path(weights) if weights is not None else None)


def _pretrained_block(name: str) -> int | None:
    """``efficientnet_lite0`` -> the default block; ``efficientnet_lite0:7`` -> 7; another name -> None."""
    base, _, block = name.partition(":")
    if base != PRETRAINED:
        return None
    if not block:
        return PRETRAINED_BLOCK
    if not block.isdigit():
        raise SettingError("extractor", f"{name}: the block is a number, e.g. {PRETRAINED}:{PRETRAINED_BLOCK}")
    return int(block)


def make_extractor(name: str, *, model: nn.Module, weights: Path | None = None) -> FeatureExtractor:
    """``model`` (the case's model; no weights file), ``efficientnet_lite0[:block]`` (weights optional) or a
    torchvision backbone (a weights file is required)."""
    block = _pretrained_block(name)
    if block is not None:
        return pretrained_extractor(block, weights=weights)
    if name == MARGINS:
        return margins_extractor(model)
    if name == MODEL:
        if weights is not None:
            raise SettingError("weights", f"{weights}: the weights of a torchvision backbone; name the backbone with --extractor "
                            f"(e.g. resnet18), or leave --weights out to use the case's model")
        return model_extractor(model)
    if weights is None:
        raise SettingError("extractor", f"{name}: needs --weights FILE (a state_dict of torchvision's {name}); "
                        "hudd downloads nothing")
    return backbone_extractor(name, weights)


def make_extractors(name: str, *, model: nn.Module, weights: Path | None = None) -> list[FeatureExtractor]:
    """One extractor per ``+``-joined part of ``name`` (:func:`make_extractor`); ``weights`` go to the backbone part."""
    parts = name.split("+")
    if not all(parts):
        raise SettingError("extractor", f"{name}: an empty part; join extractor names with +, e.g. {PRETRAINED}+{MARGINS}")
    return [make_extractor(part, model=model, weights=weights if part not in (MODEL, MARGINS) else None) for part in parts]


def block_batches(extractors: list[FeatureExtractor], dataset: ImageDataset, *, batch_size: int, device: torch.device,
                  precision: torch.dtype = torch.float32) -> Iterator[tuple[np.ndarray, ...]]:
    """Batch by batch of ``dataset``, in order, the features of every extractor: one ``(b, d_i)`` float32 block each,
    to be set side by side (one progress bar for them all)."""
    yield from zip(*(feature_batches(extractor, dataset, batch_size=batch_size, device=device, precision=precision,
                                     desc="features" if i == 0 else None)
                     for i, extractor in enumerate(extractors)))


class _Captured(Exception):
    """Raised by :func:`_batch_features`' hook once the features are taken, to skip the rest of the network."""


def extract_features(extractor: FeatureExtractor, dataset: ImageDataset, *, batch_size: int, device: torch.device,
                     precision: torch.dtype = torch.float32) -> np.ndarray:
    """``(n, d)`` float32 features of every image of ``dataset``, in order, computed on ``device`` in batches.

    With a reduced ``precision`` (:mod:`hudd.core.precision`) the network runs under autocast; the
    pooling of the feature maps and the logit margins are computed in float32.

    Memory is bounded by ``batch_size`` (plus the ``(n, d)`` result). The module is put in eval
    mode and on ``device``; its parameters are not changed.

    Raises
    ------
    HuddError
        The features of an image are NaN or infinite (the message names the first one).
    """
    chunks = list(feature_batches(extractor, dataset, batch_size=batch_size, device=device, precision=precision))
    return np.concatenate(chunks) if chunks else np.zeros((0, 0), np.float32)


@torch.no_grad()
def feature_batches(extractor: FeatureExtractor, dataset: ImageDataset, *, batch_size: int, device: torch.device,
                    precision: torch.dtype = torch.float32, desc: str | None = "features") -> Iterator[np.ndarray]:
    """The features of :func:`extract_features`, batch by batch (a progress bar named ``desc``, none without)."""
    module = extractor.module.to(device).eval()
    prepared = extractor.prepare_dataset(dataset)
    for images, _, index in progress(make_loader(prepared, batch_size=batch_size), desc=desc, unit="batch"):
        features = _batch_features(extractor, module, extractor.prepare_batch(images.to(device, non_blocking=True)),
                                   autocast(device, precision))
        check_finite(features, prepared, index)
        yield features.float().cpu().numpy()


def _batch_features(extractor: FeatureExtractor, module: nn.Module, images: torch.Tensor, context) -> torch.Tensor:
    """One batch's features: the logit margins, or the input of the feature layer (4-D ones pooled), the layers after it
    skipped; the network runs in ``context`` (autocast to the precision, or none), the margins and pooling in float32. The
    hook lives for this batch only, so extractors sharing a module can take turns batch by batch."""
    if extractor.takes_outputs:
        with context:
            outputs = module(images)
        return logit_margins(wide(outputs))
    captured = []

    def capture(_, inputs):
        captured.append(inputs[0])
        raise _Captured  # the layers after the feature layer are not needed: stop the forward pass here

    handle = module.get_submodule(extractor.layer).register_forward_pre_hook(capture)
    try:
        with contextlib.suppress(_Captured), context:
            module(images)
    finally:
        handle.remove()
    features = wide(captured[-1])
    return features.mean(dim=(2, 3)) if features.dim() == 4 else features.flatten(1)
