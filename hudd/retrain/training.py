"""The one training loop: baseline training, retraining, baselines and treatments all go through :func:`fit`.

Seeded (weights are initialised by the caller, the batch order comes from ``seed``), batched on
the chosen device, in float32 or with mixed precision (``precision``: bfloat16 or float16 autocast, float16
with gradient scaling; the weights stay float32). The best
epoch on the validation set is kept (early stopping with ``patience``). Classification trains on
cross-entropy; keypoint models on the mean squared error between their maps and Gaussian target
maps (sigma 1.5 px) centred on the true keypoints.

Under torchrun, ``ddp=True`` trains one model over every process with PyTorch's DistributedDataParallel (the
same loop, the model wrapped): each epoch's seeded batch order is drawn alike on every rank and rank r trains on
batches r, r + world, ... of it (padded with the first batches, as ``DistributedSampler`` pads, when they do not
divide evenly), so an optimiser step averages the gradients of ``world`` batches. The same seed and number of
processes give the same weights; they are not a single process's, whose steps see one batch each.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler

from ..case.data import make_loader
from ..core import distributed
from ..models import decode_keypoints
from ..core.precision import autocast
from ..core.progress import progress

__all__ = ["TrainSettings", "History", "ExtraLoss", "fit", "keypoint_target_maps"]

_SIGMA_PX = 1.5

ExtraLoss = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""``extra_loss(model, images, outputs, targets, indices) -> scalar``: a term added to the training loss
(a treatment such as :class:`hudd.retrain.doctor.DoctorConstraint`). Arguments are on the device: the batch's
normalised images ``(B, C, H, W)``, the model's outputs for them (in the reduced precision under autocast), the
targets and the data set indices of the items. It runs outside autocast unless it enters it itself."""


@dataclass(frozen=True)
class TrainSettings:
    """Optimiser and schedule of one training run.

    ``schedule`` is ``constant`` (``lr`` throughout, as HUDD's retraining) or ``onecycle`` (warm up to
    ``lr`` then anneal, per batch: converges in fewer epochs when training from scratch).
    """

    epochs: int = 15
    lr: float = 1e-3
    optimizer: str = "adam"
    schedule: str = "constant"
    momentum: float = 0.9
    weight_decay: float = 0.0
    batch_size: int = 64
    patience: int = 4
    seed: int = 0
    precision: torch.dtype = torch.float32


@dataclass
class History:
    """Per-epoch training loss and validation metric (accuracy, or minus the mean keypoint error)."""

    train_loss: list = field(default_factory=list)
    val_metric: list = field(default_factory=list)
    best_epoch: int = -1


def keypoint_target_maps(coords: torch.Tensor, height: int, width: int, sigma: float = _SIGMA_PX) -> torch.Tensor:
    """Gaussian maps ``(B, K, H, W)`` centred on keypoints ``(B, K, 2)`` given as ``(x, y)`` pixels."""
    xs = torch.arange(width, device=coords.device, dtype=torch.float32)
    ys = torch.arange(height, device=coords.device, dtype=torch.float32)
    dx = (xs[None, None, None, :] - coords[..., 0, None, None]) ** 2
    dy = (ys[None, None, :, None] - coords[..., 1, None, None]) ** 2
    return torch.exp(-(dx + dy) / (2 * sigma * sigma))


def _loss(task: str, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    if task == "classification":
        return F.cross_entropy(outputs.float(), targets)
    maps = keypoint_target_maps(targets.float(), outputs.shape[-2], outputs.shape[-1])
    return F.mse_loss(outputs.float(), maps) * maps.shape[1]


def _metric(task: str, outputs: torch.Tensor, targets: torch.Tensor) -> float:
    """Sum over the batch of correctness (classification) or minus mean keypoint error in px."""
    if task == "classification":
        return float((outputs.argmax(dim=1) == targets).sum())
    err = torch.linalg.norm(decode_keypoints(outputs) - targets.float(), dim=-1).mean(dim=1)
    return -float(err.sum())


def _optimizer(model: torch.nn.Module, settings: TrainSettings) -> torch.optim.Optimizer:
    if settings.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay)
    if settings.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    raise ValueError(f"unknown optimizer {settings.optimizer!r}; use adam or sgd")


def _scheduler(optimizer: torch.optim.Optimizer, settings: TrainSettings, steps_per_epoch: int):
    if settings.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=settings.lr, total_steps=max(1, settings.epochs * steps_per_epoch))
    if settings.schedule == "constant":
        return None
    raise ValueError(f"unknown schedule {settings.schedule!r}; use constant or onecycle")


@torch.no_grad()
def _validate(model, dataset, task, settings, device) -> float:
    model.eval()
    total = 0.0
    for images, targets, _ in make_loader(dataset, batch_size=settings.batch_size):
        with autocast(device, settings.precision):
            outputs = model(images.to(device))
        total += _metric(task, outputs.float(), targets.to(device))
    return total / max(1, len(dataset))


def _epoch_loader(train_set: Dataset, settings: TrainSettings, epoch: int, ddp: bool) -> DataLoader:
    """The epoch's shuffled batches (seeded by ``seed`` and ``epoch``); with ``ddp``, this rank's share of them."""
    seed = settings.seed * 100_003 + epoch
    drop_last = len(train_set) % settings.batch_size == 1  # batch norm cannot train on a last batch of one image
    if not ddp:
        return make_loader(train_set, batch_size=settings.batch_size, shuffle=True, seed=seed, drop_last=drop_last)
    batches = list(BatchSampler(RandomSampler(train_set, generator=torch.Generator().manual_seed(seed)), settings.batch_size, drop_last))
    world = distributed.world_size()
    padded = [batches[i % len(batches)] for i in range(-(-len(batches) // world) * world)]
    return DataLoader(train_set, batch_sampler=padded[distributed.rank()::world])


def _wrap(model: torch.nn.Module, device: torch.device, ddp: bool) -> torch.nn.Module:
    """``model`` itself, or with ``ddp`` wrapped in DistributedDataParallel (which averages the ranks' gradients)."""
    if not ddp:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def fit(model: torch.nn.Module, train_set: Dataset, val_set: Dataset | None, *, task: str, settings: TrainSettings, device: torch.device,
        desc: str = "train", extra_loss: ExtraLoss | None = None, ddp: bool = False) -> History:
    """Train ``model`` in place and leave it with the weights of its best validation epoch.

    Parameters
    ----------
    model : torch.nn.Module
        Initialised (or pre-trained, for fine-tuning) model.
    train_set, val_set : Dataset
        Items ``(image, target, index)``. Without ``val_set`` (or when empty) the last epoch is kept.
    task : {"classification", "keypoints"}
    settings : TrainSettings
    device : torch.device
    extra_loss : callable, optional
        A term added to every batch's loss (see :data:`ExtraLoss`); it is computed after the model's
        forward pass, outside autocast, and its gradient goes through the same gradient scaler. The
        recorded ``train_loss`` is the total. Without it, training is exactly the plain loop.
    ddp : bool
        Under torchrun, train over every process with DistributedDataParallel (see the module docstring); every
        rank calls ``fit`` alike. ``extra_loss`` cannot take part (DDP does not support ``torch.autograd.grad``).
    """
    model.to(device)
    net = _wrap(model, device, ddp)
    optimizer = _optimizer(model, settings)
    steps = (len(train_set) + settings.batch_size - 1) // settings.batch_size
    scheduler = _scheduler(optimizer, settings, -(-steps // distributed.world_size()) if ddp else steps)
    scaler = torch.amp.GradScaler(device.type, enabled=settings.precision == torch.float16)  # bfloat16 has float32's range
    history = History()
    best_metric, best_state, stale = -np.inf, None, 0
    has_val = val_set is not None and len(val_set) > 0
    for epoch in progress(range(settings.epochs), desc=desc, unit="epoch", leave=False):
        net.train()
        loader = _epoch_loader(train_set, settings, epoch, ddp)
        if ddp and epoch == 0:
            first = distributed.rank() + 1
            distributed.rank_line(desc, f"DDP: batches {first}, {first + distributed.world_size()}, ... of every epoch "
                                        f"({len(loader)} per epoch, of {len(train_set)} images)")
        losses = []
        for images, targets, indices in progress(loader, desc=f"epoch {epoch + 1}/{settings.epochs}", unit="batch"):
            optimizer.zero_grad(set_to_none=True)
            images = images.to(device, non_blocking=True)
            targets = targets.to(device, non_blocking=True)
            with autocast(device, settings.precision):
                outputs = net(images)
            loss = _loss(task, outputs, targets)
            if extra_loss is not None:
                loss = loss + extra_loss(model, images, outputs, targets, indices.to(device, non_blocking=True))
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            if scheduler is not None:
                scheduler.step()
            losses.append(float(loss.detach()))
        history.train_loss.append(float(np.mean(losses)) if losses else float("nan"))
        if not has_val:
            continue
        metric = _validate(model, val_set, task, settings, device)
        history.val_metric.append(metric)
        if metric > best_metric:
            best_metric, best_state, stale = metric, copy.deepcopy(model.state_dict()), 0
            history.best_epoch = epoch
        else:
            stale += 1
            if stale >= settings.patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    else:
        history.best_epoch = len(history.train_loss) - 1
    model.eval()
    return history
