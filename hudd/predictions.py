"""Run a model over a data set in batches and score each image.

Classification: an image is correct when the arg-max logit is its label. Keypoints: the
prediction of each keypoint is the arg-max of its map, and an image is an error when the mean
Euclidean keypoint error exceeds ``error_px`` pixels (4 by default, as the original tool).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .data import ImageDataset, make_loader
from .models import decode_keypoints
from .progress import progress

__all__ = ["predict", "score", "accuracy_by"]


@torch.no_grad()
def predict(model: torch.nn.Module, dataset: ImageDataset, *, batch_size: int, device: torch.device, desc: str = "predict") -> np.ndarray:
    """Model outputs for every image, in dataset order.

    Returns
    -------
    ndarray of float32
        ``(n, n_classes)`` logits for classification, ``(n, K, 2)`` keypoint coordinates ``(x, y)``
        for keypoint models.
    """
    model = model.to(device).eval()
    task = dataset.spec.task
    chunks = []
    for images, _, _ in progress(make_loader(dataset, batch_size=batch_size), desc=desc, unit="batch"):
        out = model(images.to(device, non_blocking=True))
        if task == "keypoints":
            out = decode_keypoints(out)
        chunks.append(out.float().cpu().numpy())
    if not chunks:
        n_out = dataset.spec.n_outputs
        return np.zeros((0, n_out) if task == "classification" else (0, n_out, 2), np.float32)
    return np.concatenate(chunks)


def score(dataset: ImageDataset, outputs: np.ndarray, *, error_px: float = 4.0) -> pd.DataFrame:
    """One row per image: ``image, label, prediction, correct`` plus ``score`` or ``error_px``/``worst_keypoint``.

    For classification ``score`` is the softmax probability of the prediction; for keypoints
    ``error_px`` is the mean keypoint error and ``worst_keypoint`` the index of the largest one.
    """
    listing = dataset.listing
    if dataset.spec.task == "classification":
        logits = torch.from_numpy(outputs)
        probs = torch.softmax(logits, dim=1).numpy() if len(outputs) else np.zeros((0, 1))
        pred = outputs.argmax(axis=1) if len(outputs) else np.zeros(0, np.int64)
        classes = np.asarray(dataset.spec.classes, dtype=object)
        return pd.DataFrame({
            "image": list(listing.ids),
            "label": classes[listing.targets] if len(listing) else [],
            "prediction": classes[pred] if len(pred) else [],
            "correct": pred == listing.targets,
            "score": probs[np.arange(len(pred)), pred] if len(pred) else [],
        })
    per_keypoint = np.linalg.norm(outputs - listing.targets, axis=-1)
    mean_error = per_keypoint.mean(axis=1) if len(outputs) else np.zeros(0)
    return pd.DataFrame({
        "image": list(listing.ids),
        "error_px": np.round(mean_error, 4),
        "worst_keypoint": per_keypoint.argmax(axis=1) if len(outputs) else np.zeros(0, np.int64),
        "correct": mean_error <= error_px,
    })


def accuracy_by(results: pd.DataFrame, column: str) -> pd.DataFrame:
    """Share of correct images per value of ``column``: ``column, n, correct, accuracy, error_rate``."""
    grouped = results.groupby(column, sort=True)["correct"]
    table = pd.DataFrame({"n": grouped.size(), "correct": grouped.sum().astype(int)})
    table["accuracy"] = table["correct"] / table["n"]
    table["error_rate"] = 1.0 - table["accuracy"]
    return table.reset_index()
