"""``hudd doctor``: Model Doctor's diagnosis (Feng et al., AAAI 2022, equation 4) of a classifier.

For every class, the mean over its ``T`` (``doctor_per_class``, default 100) most confident, correctly
classified training images and ``J`` (``doctor_draws``, default 10) noise draws of the per-channel sum
of ``|d y_class / d feature map|`` at each chosen convolutional layer (``doctor_layers``; default
the last two), batched on the device; see :mod:`hudd.retrain.doctor` for the numbers and the design
choices. Then, for every error-inducing test image, the channels whose correlation with its
predicted class departs most from that class's aggregate. Outputs in the workspace:

- ``Doctor/<layer>.npy``: the raw class-by-channel aggregates ``(n_classes, K)`` float32;
- ``Doctor/<layer>.csv``: one row per class and channel: ``class, channel, correlation`` (raw),
  ``normalised`` (per class, largest 1), ``unrelated`` (normalised < ``doctor_v``: the channels whose
  predicted-class gradients the treatment penalises), ``n_images``;
- ``Doctor/<layer>.png``: the normalised table as a picture (classes x channels);
- ``Doctor/layers.csv``: layer, alias (conv1, ...), channels, height, width of the feature map;
- ``Doctor/images.csv``: the training images behind the aggregates: image, label, confidence, rank;
- ``Doctor/diagnosis.csv``: per error-inducing test image and layer, the ``5`` channels of largest
  absolute departure: ``image, label, prediction, layer, alias, rank, channel, correlation`` (the
  image's, normalised), ``aggregate`` (the predicted class's, normalised), ``departure``
  (their difference), ``kind`` (``extra``: the image leans on a channel its predicted class does not
  use; ``missing``: it lacks one the class relies on), ``unrelated``.

The step predicts both sets itself (it does not need ``hudd test``), so its inputs are the model and
the TrainingSet and TestSet listings; the noise is seeded by ``seed`` (same seed, same files).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Subset

from ..case.data import ImageDataset, make_loader
from ..retrain.doctor import FeatureTap, class_channel_correlation, diagnose, image_channel_correlation, normalise
from ..export.plots import plt, save_figure
from ..explain.lrp.composites import ANALYSED_TYPES
from ..explain.lrp.engine import layer_aliases
from ..models.predictions import predict
from ..core.progress import echo
from ..core.text import format_table
from ..core.files import save_npy, write_csv
from .common import Context, read_doctor_aggregates, resolve_doctor_layers, run_step

__all__ = ["DoctorOutcome", "run", "summary", "VERSION", "TOP_CHANNELS", "CONFIG_KEYS"]

VERSION = 1
TOP_CHANNELS = 5
CONFIG_KEYS = ("doctor_layers", "doctor_per_class", "doctor_draws", "doctor_delta", "doctor_v", "seed", "batch_size")


@dataclass
class DoctorOutcome:
    """The diagnosed layers, their raw aggregates ``(n_classes, K)``, the images behind them and the diagnosis."""

    ran: bool
    layers: pd.DataFrame
    aggregates: dict
    images: pd.DataFrame
    diagnosis: pd.DataFrame


def _layers_table(ctx: Context, layers: list[str]) -> pd.DataFrame:
    """Alias (as in Heatmaps/layers.csv), channels and feature-map size of each layer, from one forward pass."""
    model = ctx.model.module.eval().to(ctx.device)
    spec = ctx.model.spec
    aliases = layer_aliases([(n, m) for n, m in model.named_modules() if isinstance(m, ANALYSED_TYPES)])
    with torch.no_grad(), FeatureTap(model, layers) as tap:
        model(torch.zeros(1, spec.channels, spec.height, spec.width, device=ctx.device))
    return pd.DataFrame([{"layer": name, "alias": aliases.get(name, name), "channels": tap.maps[name].shape[1],
                          "height": tap.maps[name].shape[2], "width": tap.maps[name].shape[3]} for name in layers])


def _confident(predicted: np.ndarray, labels: np.ndarray, confidence: np.ndarray, n_classes: int, t: int) -> np.ndarray:
    """Indices of each class's ``t`` most confident correct images (class by class; ties: lower index first)."""
    picked = []
    for c in range(n_classes):
        members = np.flatnonzero((predicted == c) & (labels == c))
        picked.append(members[np.argsort(-confidence[members], kind="stable")][:t])
    return np.concatenate(picked) if picked else np.zeros(0, np.int64)


def _batches(dataset: ImageDataset, rows: np.ndarray, classes: np.ndarray, batch_size: int):
    """``(images, classes)`` batches of ``dataset[rows]`` with ``classes`` aligned to ``rows``."""
    lookup = dict(zip(rows.tolist(), classes.tolist()))
    for images, _, index in make_loader(Subset(dataset, rows.tolist()), batch_size=batch_size):
        yield images, torch.tensor([lookup[int(i)] for i in index], dtype=torch.long)


def _plot(path, normalised: np.ndarray, classes, *, title: str) -> None:
    n_classes, n_channels = normalised.shape
    fig, ax = plt.subplots(figsize=(min(16.0, max(6.0, 2.5 + 0.16 * n_channels)), max(2.8, 1.4 + 0.32 * n_classes)))
    shown = ax.imshow(normalised, aspect="auto", cmap="magma", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_yticks(range(n_classes), labels=list(classes))
    ax.set_xlabel("channel")
    ax.set_title(title, fontsize=9)
    fig.colorbar(shown, ax=ax, fraction=0.04, pad=0.02)
    fig.tight_layout()
    save_figure(fig, path)


def run(ctx: Context, *, force: bool = False) -> DoctorOutcome:
    """Run (or skip, when current) the diagnosis; see the module docstring."""
    ws = ctx.workspace
    config = ctx.config
    layers = resolve_doctor_layers(ctx)
    train = ctx.listing("TrainingSet")
    test = ctx.listing("TestSet")
    classes = ctx.model.spec.classes
    inputs = {"model": ctx.model_hash, "TrainingSet": ctx.listing_hash(train), "TestSet": ctx.listing_hash(test)}
    settings = {key: getattr(config, key) for key in CONFIG_KEYS} | {"device": ctx.device.type}

    def compute(fingerprint: str, resume: bool):
        model = ctx.model.module
        layer_table = _layers_table(ctx, layers)
        noise = {"n_draws": config.doctor_draws, "delta": config.doctor_delta, "device": ctx.device}
        # the training images behind the aggregates
        train_data = ctx.dataset(train)
        logits = predict(model, train_data, batch_size=config.batch_size, device=ctx.device, desc="doctor: predict TrainingSet")
        probs = torch.softmax(torch.from_numpy(logits), dim=1).numpy()
        predicted = logits.argmax(1)
        confidence = probs[np.arange(len(probs)), predicted]
        rows = _confident(predicted, train.targets, confidence, len(classes), config.doctor_per_class)
        counts = np.bincount(train.targets[rows], minlength=len(classes))
        for c in np.flatnonzero(counts < config.doctor_per_class):
            echo(f"doctor: class {classes[c]} has {counts[c]} correctly classified training images, fewer than doctor_per_class = {config.doctor_per_class}"
                 + ("; its aggregates are zero" if counts[c] == 0 else ""))
        images = pd.DataFrame({"image": [train.ids[i] for i in rows], "label": [classes[k] for k in train.targets[rows]],
                               "confidence": np.round(confidence[rows], 6),
                               "rank": np.concatenate([np.arange(1, n + 1) for n in counts]) if len(rows) else []})
        generator = torch.Generator(device=ctx.device).manual_seed(config.seed)
        aggregates = class_channel_correlation(model, _batches(train_data, rows, train.targets[rows], config.batch_size),
                                               n_classes=len(classes), layers=layers, generator=generator,
                                               desc="doctor: aggregates", **noise)
        # the error-inducing test images, against their predicted class
        test_data = ctx.dataset(test, cache=False)
        test_logits = predict(model, test_data, batch_size=config.batch_size, device=ctx.device, desc="doctor: predict TestSet")
        test_predicted = test_logits.argmax(1)
        errors = np.flatnonzero(test_predicted != test.targets)
        generator = torch.Generator(device=ctx.device).manual_seed(config.seed + 1)
        per_image = image_channel_correlation(model, _batches(test_data, errors, test_predicted[errors], config.batch_size),
                                              layers=layers, generator=generator, desc="doctor: diagnosis", **noise) if len(errors) else {}
        outputs = [ws.doctor_layers_csv, ws.doctor_images_csv, ws.doctor_diagnosis_csv]
        frames = []
        for row in layer_table.itertuples():
            name, raw = row.layer, aggregates[row.layer]
            normalised = normalise(raw)
            save_npy(ws.doctor_npy(name), raw)
            write_csv(ws.doctor_csv(name), pd.DataFrame({
                "class": np.repeat(list(classes), raw.shape[1]), "channel": np.tile(np.arange(raw.shape[1]), len(classes)),
                "correlation": raw.reshape(-1).astype(np.float64).round(8), "normalised": normalised.reshape(-1).round(6),
                "unrelated": (normalised < config.doctor_v).reshape(-1), "n_images": np.repeat(counts, raw.shape[1])}))
            _plot(ws.doctor_png(name), normalised, classes,
                  title=f"{name} ({row.alias}): mean |d y_class / d feature map| per channel\n"
                        f"each class scaled to max 1; T = {config.doctor_per_class}, J = {config.doctor_draws}, delta = {config.doctor_delta:g}")
            outputs += [ws.doctor_npy(name), ws.doctor_csv(name), ws.doctor_png(name)]
            if len(errors):
                channels, departure = diagnose(per_image[name], test_predicted[errors], raw, top=TOP_CHANNELS)
                top = channels.shape[1]
                agg = normalised[np.repeat(test_predicted[errors], top), channels.reshape(-1)]
                frames.append(pd.DataFrame({
                    "image": np.repeat([test.ids[i] for i in errors], top), "label": np.repeat([classes[k] for k in test.targets[errors]], top),
                    "prediction": np.repeat([classes[k] for k in test_predicted[errors]], top), "layer": name, "alias": row.alias,
                    "rank": np.tile(np.arange(1, top + 1), len(errors)), "channel": channels.reshape(-1),
                    "correlation": (agg + departure.reshape(-1)).round(6), "aggregate": agg.round(6),
                    "departure": departure.reshape(-1).round(6), "kind": np.where(departure.reshape(-1) > 0, "extra", "missing"),
                    "unrelated": agg < config.doctor_v, "_order": np.repeat(np.arange(len(errors)), top)}))
        columns = ["image", "label", "prediction", "layer", "alias", "rank", "channel", "correlation", "aggregate", "departure", "kind", "unrelated"]
        diagnosis = pd.concat(frames).sort_values(["_order"], kind="stable")[columns] if frames else pd.DataFrame(columns=columns)
        write_csv(ws.doctor_layers_csv, layer_table)
        write_csv(ws.doctor_images_csv, images)
        write_csv(ws.doctor_diagnosis_csv, diagnosis)
        return outputs

    ran = run_step(ctx, "doctor", VERSION, config=settings, inputs=inputs, compute=compute, force=force)
    return DoctorOutcome(ran, pd.read_csv(ws.doctor_layers_csv), read_doctor_aggregates(ctx), pd.read_csv(ws.doctor_images_csv),
                         pd.read_csv(ws.doctor_diagnosis_csv))


def summary(outcome: DoctorOutcome, *, v: float, folder=None) -> str:
    """What ``hudd doctor`` prints: per layer the channels, how many a class relies on (normalised aggregate
    >= ``v``) on average, how many every class relies on and how many none does (zero gradient); then the
    channels that most often top the diagnosis of an error-inducing image."""
    rows = []
    for row in outcome.layers.itertuples():
        raw = outcome.aggregates[row.layer]
        related = normalise(raw) >= v
        rows.append({"layer": row.layer, "alias": row.alias, "channels": row.channels, "related_per_class": float(related.sum(1).mean()),
                     "related_to_all": int(related.all(0).sum()), "unused": int((raw == 0).all(0).sum())})
    lines = [format_table(pd.DataFrame(rows), floats="{:.1f}")]
    diagnosis = outcome.diagnosis
    n_images = diagnosis["image"].nunique() if len(diagnosis) else 0
    lines.append(f"diagnosis: {n_images} error-inducing test images, the {TOP_CHANNELS} channels departing most from their predicted class, per layer")
    for row in outcome.layers.itertuples():
        first = diagnosis[(diagnosis["layer"] == row.layer) & (diagnosis["rank"] == 1)] if len(diagnosis) else diagnosis
        if len(first):
            counts = first.groupby(["channel", "kind"]).size().sort_values(ascending=False, kind="stable").head(3)
            lines.append(f"  {row.alias}: most often first: " + ", ".join(f"channel {c} {k} ({n} images)" for (c, k), n in counts.items()))
    if folder is not None:
        lines.append(f"tables, plots and diagnosis.csv: {folder}")
    return "\n".join(lines)
