"""Step 1a, ``hudd heatmaps``: LRP heatmaps of every analysed layer for each error-inducing test image.

Notation: ``n`` error-inducing test images (rows of ``testResult.csv`` with ``correct == False``,
in file order). The heatmap of layer L is the relevance at the input of L (see
:mod:`hudd.explain.lrp.engine`) summed over channels: ``(N, M)`` for convolution inputs, ``(1, D)`` for
fully connected ones. Outputs in the workspace:

- ``Heatmaps/<layer>.npy``: ``(n, N, M)`` float32 (or float16), filled batch by batch through
  ``numpy.lib.format.open_memmap``, so memory is bounded by the batch size;
- ``Heatmaps/images.csv``: row, image, label, prediction (or worst keypoint) and the explained target;
- ``Heatmaps/layers.csv``: layer (module path), alias (conv1, ..., fc1, ...), kind, N, M, left_out: every
  analysed layer of the model; ``left_out`` is empty for a layer with heatmaps and says why a layer
  has none (its input is another layer's, so is its heatmap; a single-value heatmap; never called).
  Only the layers with heatmaps are clustered. ``--layers`` names layers explicitly: then none is left out.

The arrays are written under ``.staging/heatmaps/`` (allocated in full first, their disk space
reserved) and replace the previous heatmaps only when every image is done. Resumable: after each
batch is flushed, ``progress.json`` there records the row ranges done (under torchrun, rank 0's;
each other rank writes its own ``progress-<rank>.json``); a killed run with unchanged inputs
computes only the batches not done yet, with the same batch boundaries, so it ends byte-identical
to an uninterrupted run, whatever the number of processes of either run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from numpy.lib.format import open_memmap
from torch.utils.data import Subset

from ..case.data import ImageDataset, make_loader
from ..core import rows
from ..core.errors import HuddError
from ..explain.lrp import Explainer, UnsupportedLayer
from ..models.predictions import check_finite
from ..core.progress import note, progress
from ..core.files import allocate, file_hash, remove, require_space, storage_error, write_csv
from ..workspace.tables import read_layers
from .common import Context, error_positions, error_rows, fill_rows, run_step

__all__ = ["HeatmapsOutcome", "UnexplainableModel", "run", "VERSION"]

VERSION = 2  # 2: BatchNorm folded wherever it follows a convolution, gates and activations pass relevance; layers left out


class UnexplainableModel(HuddError):
    """The model has a layer that LRP has no rule for; the message names it."""


@dataclass
class HeatmapsOutcome:
    """The analysed layers (``layers.csv`` as a table) and the number of heatmaps per layer."""

    ran: bool
    n_images: int
    layers: pd.DataFrame


def _explainer(ctx: Context) -> Explainer:
    spec = ctx.model.spec
    try:
        return Explainer(ctx.model.module, composite=ctx.config.lrp_rule, layers=list(ctx.config.layers) or None, device=ctx.device,
                         input_shape=(spec.channels, spec.height, spec.width), precision=ctx.precision)
    except UnsupportedLayer as exc:
        raise UnexplainableModel(f"{ctx.model.path}: {exc}; explain this model with a feature method (--method joint)") from None
    except ValueError as exc:
        raise HuddError(f"{ctx.config.where('layers')} {','.join(ctx.config.layers)}: {exc} (model {ctx.model_name})") from None


def _announce(explainer: Explainer, path) -> None:
    """One line on the layers left out (if any), and one per note of the LRP preparation."""
    if explainer.left_out:
        kinds = pd.Series([re.sub(r"as \S+ ", "as another layer ", reason) for reason in explainer.left_out.values()]).value_counts(sort=False)
        note(f"heatmaps: {len(explainer.left_out)} of {len(explainer.all_layers)} layers left out of the clustering ("
             + "; ".join(f"{reason}: {n}" for reason, n in kinds.items()) + f"), see {path}")
    for line in explainer.notes:
        note(f"heatmaps: {line}")


def _targets(ctx: Context, errors: pd.DataFrame, dataset: ImageDataset, positions: np.ndarray) -> np.ndarray:
    """What each image's relevance explains: the worst keypoints, the true classes, or the classes ``testResult.csv``
    says the model predicted (not the arg-max of the pass itself, which a near tie could turn under a reduced
    ``precision``)."""
    if ctx.model.spec.task == "keypoints":
        return errors["worst_keypoint"].to_numpy(np.int64)
    if ctx.config.lrp_target == "true":
        return dataset.listing.targets[positions]
    index = {str(name): i for i, name in enumerate(ctx.model.spec.classes)}
    unknown = sorted(set(errors["prediction"]) - set(index))
    if unknown:
        raise HuddError(f"{ctx.workspace.test_result}: prediction {unknown[0]!r} is no class of the model; "
                        f"run `hudd test {ctx.case.root} --force`")
    return errors["prediction"].map(index).to_numpy(np.int64)


def _index_table(ctx: Context, errors: pd.DataFrame, targets: np.ndarray) -> pd.DataFrame:
    table = pd.DataFrame({"row": np.arange(len(errors)), "image": errors["image"]})
    spec = ctx.model.spec
    if spec.task == "keypoints":
        table["worst_keypoint"] = errors["worst_keypoint"].to_numpy()
        table["target"] = [spec.keypoints[k] for k in targets]
    else:
        table["label"] = errors["label"].to_numpy()
        table["prediction"] = errors["prediction"].to_numpy()
        table["target"] = [spec.classes[k] for k in targets]
    return table


@dataclass
class _Prepared:
    """What every rank needs to compute its rows: the error-inducing images, where they are in the TestSet, the
    explainer and the targets (built once per command and process)."""

    errors: pd.DataFrame
    explainer: Explainer
    positions: np.ndarray
    dataset: ImageDataset
    targets: np.ndarray


def _prepare(ctx: Context) -> _Prepared:
    if "heatmaps" not in ctx.cache:
        errors = error_rows(ctx)
        explainer = _explainer(ctx)
        listing = ctx.listing("TestSet")
        positions = error_positions(ctx, errors, listing)
        dataset = ctx.dataset(listing, cache=False)
        ctx.cache["heatmaps"] = _Prepared(errors, explainer, positions, dataset, _targets(ctx, errors, dataset, positions))
    return ctx.cache["heatmaps"]


def run(ctx: Context, *, force: bool = False) -> HeatmapsOutcome:
    """Run (or skip, or resume) the heatmaps step; see the module docstring."""
    ws = ctx.workspace
    prepared = _prepare(ctx)
    errors, explainer = prepared.errors, prepared.explainer
    _announce(explainer, ws.heatmap_layers)
    config = {key: getattr(ctx.config, key) for key in ("lrp_rule", "lrp_target", "layers", "heatmap_dtype", "batch_size", "precision")}
    config["device"] = ctx.device.type
    inputs = {"model": ctx.model_hash, "testResult": file_hash(ws.test_result), "TestSet": ctx.listing_hash(prepared.dataset.listing)}
    dtype = np.dtype(ctx.config.heatmap_dtype)

    def compute(fingerprint: str, resume: bool):
        shapes = _shapes(prepared)
        out = ws.staging("heatmaps", keep=resume)
        done = rows.resume(out.heatmaps_dir, ws.root, fingerprint, "heatmaps", len(errors), explainer.layers) if resume else []
        if not done:
            out = ws.staging("heatmaps")
        try:
            out.heatmaps_dir.mkdir(parents=True, exist_ok=True)
            write_csv(out.heatmap_index, _index_table(ctx, errors, prepared.targets))
            if not done:
                _allocate(out, explainer.layers, shapes, len(errors), dtype)
            fill_rows(ctx, "heatmaps", _batches, len(errors), folder=out.heatmaps_dir, fingerprint=fingerprint, done=done)
            write_csv(out.heatmap_layers, _layers_table(explainer, shapes))
            for path in rows.records(out.heatmaps_dir):
                remove(path, ws.root)
        except BaseException:
            if not rows.records(out.heatmaps_dir):  # nothing worth resuming: give the disk space back
                remove(out.root, ws.root)
            raise
        ws.commit(out, [ws.heatmaps_dir])
        return [ws.heatmap(name) for name in explainer.layers] + [ws.heatmap_index, ws.heatmap_layers]

    ran = run_step(ctx, "heatmaps", VERSION, config=config, inputs=inputs, compute=compute, force=force, staged=True)
    return HeatmapsOutcome(ran, len(errors), read_layers(ws, every=True))


def _batches(ctx: Context, start: int, stop: int):
    """The heatmaps of every analysed layer for each batch of the error-inducing images ``start:stop``."""
    prepared = _prepare(ctx)
    explainer, dataset, positions, targets = prepared.explainer, prepared.dataset, prepared.positions, prepared.targets
    dtype = np.dtype(ctx.config.heatmap_dtype)
    loader = make_loader(Subset(dataset, positions[start:stop].tolist()), batch_size=ctx.config.batch_size)
    row, told = start, False
    for images, _, index in progress(loader, desc="heatmaps", unit="batch"):
        outputs, relevance = explainer.relevance(images, torch.tensor(targets[row:row + len(images)]))
        check_finite(outputs, dataset, index)
        heatmaps = {name: explainer.heatmap(name, rel) for name, rel in relevance.items()}
        if ctx.precision != torch.float32:
            _check_finite_heatmaps(ctx, heatmaps, dataset.path(int(index[0])))
        if not told:
            told = _tell_blank(heatmaps, dataset, index)
        yield {name: heatmap.float().cpu().numpy().astype(dtype) for name, heatmap in heatmaps.items()}
        row += len(images)


def _tell_blank(heatmaps: dict, dataset: ImageDataset, index: torch.Tensor) -> bool:
    """Note the first image whose relevance is zero at every layer (True when there is one): its heatmaps say nothing,
    typically because the model's output for it is about 0 (an untrained model, BatchNorm never calibrated)."""
    total = sum(heatmap.abs().flatten(1).sum(1).double().cpu() for heatmap in heatmaps.values())
    blank = torch.nonzero(total == 0).flatten()
    if len(blank):
        note(f"heatmaps: {dataset.path(int(index[int(blank[0])]))}: relevance zero at every layer, so its heatmaps show "
             "nothing; the model's output for it is about 0 (an untrained model, or BatchNorm statistics never computed?)")
    return bool(len(blank))


def _check_finite_heatmaps(ctx: Context, heatmaps: dict, path) -> None:
    """A heatmap that overflowed under a reduced ``precision`` is one line naming the image, the layer and the setting."""
    for name, heatmap in heatmaps.items():
        if not bool(torch.isfinite(heatmap).all()):
            raise HuddError(f"{path} (or another image of its batch): its {name} heatmap is not finite with "
                            f"{ctx.config.where('precision')} {ctx.config.precision}; use bfloat16 or float32")


def _shapes(prepared: _Prepared) -> dict[str, tuple[int, int]]:
    """The ``(N, M)`` heatmap of every analysed layer: from the input shapes the explainer probed, else (layers named
    with ``--layers``) from the relevance of the first image; ``(0, 0)`` for a layer never called."""
    explainer = prepared.explainer
    shapes = {name: tuple(explainer.heatmap(name, torch.zeros(shape)).shape[1:]) for name, shape in explainer.input_shapes.items()}
    if any(name not in shapes for name in explainer.layers):
        image = prepared.dataset[int(prepared.positions[0])][0][None]
        target = torch.tensor(prepared.targets[:1])
        shapes.update({name: tuple(explainer.heatmap(name, rel).shape[1:]) for name, rel in explainer.relevance(image, target)[1].items()})
    return {name: shapes.get(name, (0, 0)) for name in explainer.all_layers}


def _allocate(out, layers: list[str], shapes: dict, n: int, dtype: np.dtype) -> None:
    """A ``(n, N, M)`` ``.npy`` file per layer with heatmaps, its disk space reserved first (see :func:`hudd.core.files.allocate`)."""
    shapes = {name: (n, *shapes[name]) for name in layers}
    require_space(out.heatmaps_dir / "images.csv", sum(int(np.prod(shape)) for shape in shapes.values()) * dtype.itemsize)
    for name, shape in shapes.items():
        try:
            array = open_memmap(out.heatmap(name), mode="w+", dtype=dtype, shape=shape)
        except OSError as exc:
            raise storage_error(exc, out.heatmap(name)) from None
        del array
        allocate(out.heatmap(name))


def _layers_table(explainer: Explainer, shapes: dict) -> pd.DataFrame:
    """Every analysed layer: those with heatmaps (``explainer.layers``) and those left out, with the reason."""
    rows = []
    modules = dict(explainer.model.named_modules())
    for name in explainer.all_layers:
        if name not in explainer.layers and name not in explainer.left_out:
            continue
        shape = shapes[name]
        rows.append({"layer": name, "alias": explainer.aliases[name], "kind": type(modules[name]).__name__,
                     "N": shape[0], "M": shape[1], "left_out": explainer.left_out.get(name, "")})
    return pd.DataFrame(rows)
