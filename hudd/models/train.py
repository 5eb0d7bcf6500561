"""``hudd train``: train a baseline model on any case's TrainingSet and save a self-describing checkpoint.

The architecture is ``--arch`` (hudd's own or any torchvision classifier, from scratch) or defaults
from the images (``alexnet-small`` up to 128 px, ``alexnet`` above, ``kpnet`` for keypoint sets).
The input convention comes from the settings (``channels``, ``image_size``, ``normalize``,
``resize``), and what is left to ``auto`` from the first training image (3 channels for torchvision
architectures); every other image is converted to its mode and must have its size unless ``resize``
says otherwise. A seeded share of the TrainingSet is held out for early stopping. With
``normalize = "auto"`` the per-channel mean and std of the training images become the checkpoint's
normalisation.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Subset

from .. import __version__
from ..config import Config
from .architectures import architectures, build_architecture, is_torchvision, unknown_arch
from .case_model import InputSettings, data_spec
from ..case.data import Case, ImageDataset, list_split, read_params
from ..case.images import image_header
from ..core.device import resolve_device
from ..core.precision import resolve_precision
from ..core.errors import HuddError
from .checkpoint import ModelSpec, check_module, save_checkpoint
from .predictions import predict, score
from ..core.progress import echo, progress
from ..retrain.training import TrainSettings, fit

__all__ = ["TrainResult", "train_baseline", "default_arch", "evaluate_on"]


@dataclass
class TrainResult:
    """What ``hudd train`` made: the checkpoint, its validation metric, and test results when a TestSet exists."""

    path: Path
    spec: ModelSpec
    best_epoch: int
    val_metric: float
    test_results: pd.DataFrame | None


def default_arch(task: str, height: int, width: int) -> str:
    """``kpnet`` for keypoints, ``alexnet-small`` for images up to 128 px, else ``alexnet``."""
    if task == "keypoints":
        return "kpnet"
    return "alexnet-small" if max(height, width) <= 128 else "alexnet"


def _channel_stats(dataset: ImageDataset) -> tuple[tuple, tuple]:
    """Per-channel mean and std of a data set's pixels in [0, 1], read in one pass."""
    total = np.zeros(dataset.spec.channels)
    total_sq = np.zeros(dataset.spec.channels)
    for i in progress(range(len(dataset)), desc="read TrainingSet", unit="img"):
        pixels = dataset.raw(i).reshape(dataset.spec.channels, -1).astype(np.float64) / 255.0
        total += pixels.mean(axis=1)
        total_sq += (pixels**2).mean(axis=1)
    mean = total / len(dataset)
    std = np.sqrt(np.maximum(total_sq / len(dataset) - mean**2, 1e-12))
    return tuple(round(float(m), 6) for m in mean), tuple(round(float(max(s, 1e-3)), 6) for s in std)


def evaluate_on(case: Case, split: str, model: torch.nn.Module, spec: ModelSpec, config: Config, device: torch.device, *, model_name: str,
                seen: set | None = None) -> pd.DataFrame:
    """Per-image results of ``model`` on ``split`` (see :func:`hudd.models.predictions.score`), with ``cause`` when params.csv has it.
    ``seen``: the image sets already checked (:class:`hudd.case.data.ImageDataset`)."""
    listing = list_split(case, split, spec=spec)
    dataset = ImageDataset(case, listing, spec, model_name=model_name, cache=False, seen=seen)
    outputs = predict(model, dataset, batch_size=config.batch_size, device=device, desc=f"test {split}")
    results = score(dataset, outputs, error_px=config.error_px)
    params = read_params(case, split)
    if params is not None and "cause" in params.columns:
        results = results.merge(params[["image", "cause"]], on="image", how="left")
    return results


def train_baseline(case: Case, config: Config, *, arch: str | None = None, name: str | None = None, force: bool = False) -> TrainResult:
    """Train, save and test a baseline model for ``case`` (see module docstring).

    Raises
    ------
    HuddError
        Unknown ``arch``, a model file that exists (without ``force``), or bad training data.
    """
    if arch is not None and arch not in architectures():
        raise HuddError(f"--arch {arch}: {unknown_arch(arch)}")
    listing = list_split(case, "TrainingSet")
    _, width, height = image_header(case.datasets / listing.ids[0])
    side = config.image_size or max(height, width)
    arch = arch or default_arch(listing.task, side, side)
    name = name or arch
    path = case.models / (name if name.endswith((".pt", ".pth")) else f"{name}.pt")
    if path.exists() and not force:
        raise HuddError(f"{path}: exists; pass --force to overwrite it or --name to save under another name")
    inputs = InputSettings.of(config)
    provisional, _ = data_spec(case, listing, arch, inputs, torchvision=is_torchvision(arch))
    if is_torchvision(arch) and provisional.channels != 3:
        raise HuddError(f"{inputs.name('channels')} == {provisional.channels}: torchvision's {arch} takes 3 channels (RGB); leave "
                        "channels to auto, and images of other modes are converted to RGB")
    torch.manual_seed(config.seed)
    try:
        model = build_architecture(arch, provisional.arch_kwargs)
    except (ValueError, TypeError) as exc:
        raise HuddError(f"{case.datasets / listing.ids[0]}: {exc}") from None
    check_module(model, provisional, case.datasets / listing.ids[0], f"set {inputs.name('image_size')} (and {inputs.name('resize')}) "
                 "or choose another --arch")  # e.g. inception_v3 on images under 75 px: fails now, not mid-epoch
    has_test = case.split_dir("TestSet").is_dir()
    model_name = f"the model being trained ({path.name}, {provisional.describe_input()})"
    seen: set = set()
    if has_test:  # a test set the model cannot read fails now, not after a long training
        ImageDataset(case, list_split(case, "TestSet", spec=provisional, model_name=model_name), provisional, model_name=model_name,
                     seen=seen)
    raw = ImageDataset(case, listing, provisional, model_name=model_name, seen=seen)
    spec = provisional
    if inputs.mean_std(provisional.channels) is None:
        mean, std = _channel_stats(raw)
        spec = dataclasses.replace(provisional, mean=mean, std=std)
    dataset = raw.with_spec(spec, model_name=f"{name}")
    order = np.random.default_rng(config.seed).permutation(len(dataset))
    n_val = int(round(config.val_fraction * len(dataset))) if len(dataset) >= 10 else 0
    train_part, val_part = Subset(dataset, np.sort(order[n_val:]).tolist()), Subset(dataset, np.sort(order[:n_val]).tolist())
    device = resolve_device(config.device, config.where("device"))
    settings = TrainSettings(epochs=config.epochs, lr=config.lr, schedule="onecycle", batch_size=config.batch_size,
                             patience=config.patience, seed=config.seed,
                             precision=resolve_precision(config.precision, device, config.where("precision")))
    echo(f"train: {arch} on {len(train_part)} images ({len(val_part)} held out), {spec.describe_input()}, device {device}")
    history = fit(model, train_part, val_part, task=listing.task, settings=settings, device=device, desc=f"train {arch}")
    val_metric = history.val_metric[history.best_epoch] if history.val_metric else float("nan")
    meta = {
        "hudd_version": __version__, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "trained_on": str(case.split_dir("TrainingSet")), "n_train": len(train_part), "n_val": len(val_part),
        "epochs_run": len(history.train_loss), "best_epoch": history.best_epoch + 1, "val_metric": val_metric,
        "seed": config.seed, "lr": config.lr, "optimizer": settings.optimizer, "schedule": settings.schedule,
    }
    save_checkpoint(path, model, spec, meta)
    test_results = None
    if has_test:
        test_results = evaluate_on(case, "TestSet", model, spec, config, device, model_name=path.name, seen=seen)
    return TrainResult(path=path, spec=spec, best_epoch=history.best_epoch + 1, val_metric=val_metric, test_results=test_results)
