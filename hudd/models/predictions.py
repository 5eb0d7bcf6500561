"""Run a model over a data set in batches and score each image.

Classification: an image is correct when the arg-max logit is its label. Keypoints: the
prediction of each keypoint is the arg-max of its map, and an image is an error when the mean
Euclidean keypoint error exceeds ``error_px`` pixels (4 by default, as the original tool).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import pandas as pd
import torch

from ..case.data import ImageDataset, make_loader
from ..core.errors import HuddError
from .kpnet import decode_keypoints
from ..core.progress import progress

__all__ = ["predict", "predict_batches", "check_finite", "score", "accuracy_by", "hazard_ratio", "weak_model_reason"]

WEAK_GAIN = 0.2
"""A classifier is weak when its TrainingSet accuracy is less than this share of the way from chance to 1."""
WEAK_KEYPOINTS = 0.05
"""A keypoint model is weak when fewer than this share of the TrainingSet images are within ``error_px``."""


def predict(model: torch.nn.Module, dataset: ImageDataset, *, batch_size: int, device: torch.device, desc: str = "predict") -> np.ndarray:
    """Model outputs for every image, in dataset order.

    Returns
    -------
    ndarray of float32
        ``(n, n_classes)`` logits for classification, ``(n, K, 2)`` keypoint coordinates ``(x, y)``
        for keypoint models.

    Raises
    ------
    HuddError
        The model's output is NaN or infinite for an image (the message names the first one).
    """
    chunks = list(predict_batches(model, dataset, batch_size=batch_size, device=device, desc=desc))
    if not chunks:
        n_out = dataset.spec.n_outputs
        return np.zeros((0, n_out) if dataset.spec.task == "classification" else (0, n_out, 2), np.float32)
    return np.concatenate(chunks)


@torch.no_grad()
def predict_batches(model: torch.nn.Module, dataset: ImageDataset, *, batch_size: int, device: torch.device,
                    desc: str | None = "predict") -> Iterator[np.ndarray]:
    """The outputs of :func:`predict`, batch by batch (each batch's rows as soon as they are computed); a progress bar
    named ``desc``, none without."""
    model = model.to(device).eval()
    task = dataset.spec.task
    for images, _, index in progress(make_loader(dataset, batch_size=batch_size), desc=desc, unit="batch"):
        out = model(images.to(device, non_blocking=True))
        check_finite(out, dataset, index)
        if task == "keypoints":
            out = decode_keypoints(out)
        yield out.float().cpu().numpy()


def check_finite(outputs: torch.Tensor, dataset: ImageDataset, index: torch.Tensor) -> None:
    """Raise a HuddError naming the first image of the batch whose output has a NaN or Inf."""
    bad = ~torch.isfinite(outputs.flatten(1)).all(dim=1)
    if bool(bad.any()):
        first = int(index[bad.nonzero()[0, 0].item()])
        raise HuddError(f"{dataset.path(first)}: the output of {dataset.model_name} is NaN or infinite for this image; "
                        "check the model's weights and the image")


def score(dataset: ImageDataset, outputs: np.ndarray, *, error_px: float = 4.0) -> pd.DataFrame:
    """One row per image (``image`` relative to DataSets/).

    Classification: ``image, label, prediction, correct, confidence`` (softmax probability of the
    prediction). Keypoints: ``image, error_<keypoint>`` for every keypoint (pixels), ``error_px``
    (their mean), ``worst_keypoint`` (index of the largest), ``correct`` (mean <= ``error_px``), then the
    predicted ``<keypoint>_x, <keypoint>_y`` (pixels, as in keypoints.csv).
    """
    listing = dataset.listing
    n = len(listing)
    if dataset.spec.task == "classification":
        probs = torch.softmax(torch.from_numpy(outputs), dim=1).numpy() if n else np.zeros((0, 1))
        pred = outputs.argmax(axis=1) if n else np.zeros(0, np.int64)
        classes = np.asarray(dataset.spec.classes, dtype=object)
        return pd.DataFrame({
            "image": list(listing.ids),
            "label": classes[listing.targets] if n else [],
            "prediction": classes[pred] if n else [],
            "correct": pred == listing.targets,
            "confidence": np.round(probs[np.arange(n), pred], 6) if n else [],
        })
    per_keypoint = np.linalg.norm(outputs - listing.targets, axis=-1) if n else np.zeros((0, len(dataset.spec.keypoints)))
    mean_error = per_keypoint.mean(axis=1) if n else np.zeros(0)
    table = pd.DataFrame({"image": list(listing.ids)})
    for k, name in enumerate(dataset.spec.keypoints):
        table[f"error_{name}"] = np.round(per_keypoint[:, k], 4)
    table["error_px"] = np.round(mean_error, 4)
    table["worst_keypoint"] = per_keypoint.argmax(axis=1) if n else np.zeros(0, np.int64)
    table["correct"] = mean_error <= error_px
    for k, name in enumerate(dataset.spec.keypoints):
        for axis, column in enumerate(("x", "y")):
            table[f"{name}_{column}"] = np.round(outputs[:, k, axis], 3) if n else np.zeros(0)
    return table


def accuracy_by(results: pd.DataFrame, column: str) -> pd.DataFrame:
    """Share of correct images per value of ``column``: ``column, n, correct, accuracy, error_rate``."""
    grouped = results.groupby(column, sort=True)["correct"]
    table = pd.DataFrame({"n": grouped.size(), "correct": grouped.sum().astype(int)})
    table["accuracy"] = table["correct"] / table["n"]
    table["error_rate"] = 1.0 - table["accuracy"]
    return table.reset_index()


def weak_model_reason(results: pd.DataFrame, task: str) -> str:
    """Why the per-image results of the TrainingSet (:func:`score`) show a model hardly better than chance, or ``""``.

    Chance is the share of the commonest class (what always answering it scores).
    """
    if results.empty:
        return ""
    right = float(results["correct"].mean())
    if task == "keypoints":
        return f"right (within the error threshold) on {right:.0%} of the TrainingSet images" if right < WEAK_KEYPOINTS else ""
    chance = float(results["label"].value_counts(normalize=True).max())
    if right >= chance + WEAK_GAIN * (1.0 - chance):
        return ""
    return f"right on {right:.1%} of the TrainingSet, about chance ({chance:.1%}, always answering its commonest class)"


def hazard_ratio(results: pd.DataFrame) -> tuple[float, float, float]:
    """Error rate on images with an injected hazard, on ``none`` images, and their ratio (inf if none-error is 0)."""
    hazard = ~results["correct"][results["cause"] != "none"]
    nominal = ~results["correct"][results["cause"] == "none"]
    rate_h = float(hazard.mean()) if len(hazard) else float("nan")
    rate_n = float(nominal.mean()) if len(nominal) else float("nan")
    ratio = rate_h / rate_n if rate_n > 0 else float("inf")
    return rate_h, rate_n, ratio
