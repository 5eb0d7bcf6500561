"""The model of a case: choose the file in ``DNNModels/``, load it safely, and settle its input convention.

Every command that reads a model goes through :func:`open_case_model`, so ``--model``,
``--trust-model``, ``--arch`` and the input settings (``channels``, ``image_size``, ``normalize``,
``resize``) behave the same everywhere. A hudd checkpoint carries its convention; a setting the user
gives replaces that part of it (the model's line says so). Files that carry none (state_dicts, training
checkpoints, pickled modules) take it from the settings, and what is left to ``auto`` from:

- channels: the model's first convolution, else 3 for torchvision models, else the TrainingSet's
  first image (1 when it is grayscale, 3 otherwise);
- size: the TrainingSet's first image;
- mean/std: ImageNet's for torchvision models, else none (pixels in [0, 1]);
- resize: none.

Class names come from the TrainingSet's folders (keypoint names from its ``keypoints.csv``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch.nn as nn

from ..case.data import Case, SplitListing, keypoint_groups, list_split
from ..case.images import GRAY_MODES, image_header
from ..config import IMAGENET_MEAN, IMAGENET_STD, Config, flag_of, parse_normalize
from ..core.errors import HuddError
from .architectures import arch_kwargs, identify_torchvision, input_channels, is_torchvision
from .checkpoint import LoadedModel, ModelSpec, find_model_file, load_model
from .registry import list_models

__all__ = ["InputSettings", "open_case_model", "data_spec"]


@dataclass(frozen=True)
class InputSettings:
    """The input-convention settings of a run (0 and ``auto``: not set) and how to name each in a message."""

    channels: int = 0
    image_size: int = 0
    normalize: str = "auto"
    resize: str = "auto"
    where: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def of(cls, config: Config) -> "InputSettings":
        keys = ("channels", "image_size", "normalize", "resize")
        return cls(**{key: getattr(config, key) for key in keys}, where={key: config.where(key) for key in keys})

    def name(self, key: str) -> str:
        """The flag, or the hudd.toml key where the user set it (see :meth:`hudd.config.Config.where`)."""
        where = self.where.get(key, key)
        return flag_of(key) if where == key else where

    def mean_std(self, channels: int) -> tuple[tuple, tuple] | None:
        """The mean and std ``normalize`` gives for ``channels`` channels; None for ``auto``."""
        parsed = parse_normalize(self.normalize)
        if parsed is None:
            return None
        mean, std = parsed
        if not mean:
            return (0.0,) * channels, (1.0,) * channels
        if len(mean) == 1:
            return mean * channels, std * channels
        if len(mean) != channels:
            raise HuddError(f"{self.name('normalize')} == {self.normalize!r}: {len(mean)} values, the model takes {channels} "
                            "channels; give one mean and one std per channel")
        return mean, std


def data_spec(case: Case, listing: SplitListing, arch: str, settings: InputSettings, *, channels: int | None = None,
              torchvision: bool = False, state: dict | None = None) -> tuple[ModelSpec, list[str]]:
    """The spec of ``arch`` for ``listing``'s data under ``settings``, and the parts of it that were assumed.

    ``channels``: what the model's weights take (None: unknown); ``torchvision``: a torchvision model
    (3 channels and ImageNet's mean/std unless set); ``state``: its state_dict, for the architecture's arguments.
    Normalisation left to ``auto`` is ImageNet's for torchvision models and the identity otherwise.
    """
    first = case.datasets / listing.ids[0]
    mode, width, height = image_header(first)
    assumed = []
    channels = settings.channels or channels or (3 if torchvision else 1 if mode in GRAY_MODES else 3)
    if settings.image_size:
        height = width = settings.image_size
    elif height != width and not torchvision:
        raise HuddError(f"{first}: image is {width}x{height}; hudd's architectures take square images, set "
                        f"{settings.name('image_size')} (and {settings.name('resize')}) or crop the data set")
    resize = "none" if settings.resize == "auto" else settings.resize
    if resize != "none" and listing.task == "keypoints":
        raise HuddError(f"{settings.name('resize')} == {resize!r}: keypoint coordinates are in the images' pixels, so keypoint "
                        "sets are never resized; resize the images and their keypoints.csv, or set resize to none")
    given = settings.mean_std(channels)
    if given is None:
        given = (IMAGENET_MEAN, IMAGENET_STD) if torchvision and channels == 3 else ((0.0,) * channels, (1.0,) * channels)
        assumed.append("ImageNet's mean/std, the default for torchvision models" if torchvision and channels == 3
                       else "pixels in [0, 1], not normalised")
    n_outputs = len(listing.keypoints) if listing.task == "keypoints" else len(listing.classes)
    try:
        kwargs = arch_kwargs(arch, task=listing.task, channels=channels, n_outputs=n_outputs, height=height, state=state) \
            if torchvision or arch in list_models() else {}
    except ValueError as exc:
        raise HuddError(f"--arch {arch}: {exc}") from None
    spec = ModelSpec(arch=arch, arch_kwargs=kwargs, task=listing.task, channels=channels, height=height, width=width,
                     mean=tuple(given[0]), std=tuple(given[1]), classes=listing.classes, keypoints=listing.keypoints,
                     keypoint_groups=keypoint_groups(listing.keypoints) if listing.task == "keypoints" else {}, resize=resize)
    return spec, assumed


def _overridden(spec: ModelSpec, settings: InputSettings, path) -> tuple[ModelSpec, list[str]]:
    """A checkpoint's spec with the settings the user gave in place of its own, and the names of those settings."""
    changes, replaced = {}, []
    if settings.channels and settings.channels != spec.channels:
        changes["channels"] = settings.channels
    if settings.image_size and (settings.image_size, settings.image_size) != (spec.height, spec.width):
        changes["height"] = changes["width"] = settings.image_size
    channels = changes.get("channels", spec.channels)
    given = settings.mean_std(channels)
    if given is not None and (tuple(given[0]), tuple(given[1])) != (spec.mean, spec.std):
        changes["mean"], changes["std"] = tuple(given[0]), tuple(given[1])
    elif channels != spec.channels:
        raise HuddError(f"{settings.name('channels')} == {channels}: {path.name} records a mean/std for {spec.channels} channels; "
                        f"set {settings.name('normalize')} too")
    if settings.resize not in ("auto", spec.resize):
        if spec.task == "keypoints" and settings.resize != "none":
            raise HuddError(f"{settings.name('resize')} == {settings.resize!r}: keypoint coordinates are in the images' pixels, so "
                            "keypoint sets are never resized; resize the images and their keypoints.csv, or set resize to none")
        changes["resize"] = settings.resize
    for key, name in (("channels", "channels"), ("height", "image_size"), ("mean", "normalize"), ("resize", "resize")):
        if key in changes:
            replaced.append(settings.name(name))
    return dataclasses.replace(spec, **changes), replaced


def open_case_model(case: Case, name: str | None = None, *, trust_model: bool = False, arch: str | None = None,
                    settings: InputSettings | None = None) -> LoadedModel:
    """Load ``DNNModels/<name>`` (or the only model there) of ``case``; see the module docstring and :func:`hudd.models.load_model`."""
    settings = settings or InputSettings()
    path = find_model_file(case.models, name)
    assumed: list[str] = []
    replaced: list[str] = []

    def spec_for(found_arch: str, file_spec: ModelSpec | None, weights) -> ModelSpec:
        if file_spec is not None:
            spec, names = _overridden(file_spec, settings, path)
            replaced.extend(names)
            return spec
        listing = list_split(case, "TrainingSet")
        module = weights if isinstance(weights, nn.Module) else None
        named = found_arch
        if module is not None and listing.task == "classification":
            named = identify_torchvision(module, len(listing.classes)) or found_arch
        torchvision = is_torchvision(named) or (module is not None and type(module).__module__.startswith("torchvision."))
        spec, guessed = data_spec(case, listing, named, settings, channels=input_channels(weights), torchvision=torchvision,
                                  state=module.state_dict() if module is not None else weights)
        assumed.extend(guessed)
        return spec

    loaded = load_model(path, trust_model=trust_model, arch=arch, spec_for=spec_for)
    loaded.assumed = "; ".join(assumed)
    loaded.replaced = ", ".join(replaced)
    return loaded
