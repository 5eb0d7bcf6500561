"""Model Doctor's treatment: the channel-wise and space-wise constraints (equations 5 and 6) as a training
loss (:func:`doctor_loss`, :class:`DoctorConstraint`), and the background masks of the space-wise one.

The notation and the design choices are in :mod:`hudd.retrain.doctor`; the gradients come from
:mod:`hudd.retrain.doctor_diagnosis`.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .doctor_diagnosis import DEFAULT_DELTA, DEFAULT_V, channel_gradients, channel_sums, normalise

__all__ = ["MASK_DILATION", "dilation_px", "background_masks", "doctor_loss", "DoctorConstraint"]

MASK_DILATION = 30 / 224  # the paper's best mask expansion (Table 3: 30 px), as a share of a 224 px image side


def dilation_px(size: int) -> int:
    """Pixels by which a foreground mask of a ``size`` px image is dilated: :data:`MASK_DILATION` of its side, at least 1."""
    return max(1, int(round(size * MASK_DILATION)))


def background_masks(foreground: torch.Tensor, *, pixels: int) -> torch.Tensor:
    """Background weights from foreground masks: 1 - (foreground dilated by ``pixels``, a square of side 2 pixels + 1).

    Parameters
    ----------
    foreground : Tensor of shape (N, H, W), bool or {0, 1}
    pixels : int
        The dilation (see :func:`dilation_px`); 0 keeps the mask as it is.

    Returns
    -------
    Tensor of float32, shape (N, H, W)
    """
    fg = foreground.float()[:, None]
    if pixels > 0:
        fg = F.max_pool2d(fg, kernel_size=2 * pixels + 1, stride=1, padding=pixels)
    return 1.0 - fg[:, 0]


def _rescale(background: torch.Tensor, size: tuple[int, int], chunk: int = 1024) -> torch.Tensor:
    """``(N, H, W)`` -> ``(N, h, w)`` float32 by area averaging (what share of each feature cell is background)."""
    if tuple(background.shape[-2:]) == tuple(size):
        return background.float()
    if not len(background):
        return torch.zeros((0, *size), dtype=torch.float32, device=background.device)
    return torch.cat([F.interpolate(background[i:i + chunk, None].float(), size=size, mode="area")[:, 0]
                      for i in range(0, len(background), chunk)])


def doctor_loss(grad_predicted: Mapping[str, torch.Tensor], grad_second: Mapping[str, torch.Tensor], below: Mapping[str, torch.Tensor], *,
                background: Mapping[str, torch.Tensor] | None = None, scale: Mapping[str, float] | None = None) -> torch.Tensor:
    """Equations 5 and 6 summed over layers (equation 7 without the original loss), averaged over the batch.

    Parameters
    ----------
    grad_predicted, grad_second : dict of str to Tensor of shape (J, B, K, h, w)
        ``d y_n / d (m + sigma^j)`` of the predicted and ``d y_s / ...`` of the second-ranked class (sign ignored).
    below : dict of str to Tensor of shape (B, K)
        ``1[A[y_n, k] / max A[y_n] < v]`` for each image's predicted class.
    background : dict of str to Tensor of shape (B, h, w), optional
        Background weight of each feature cell (0 everywhere for an image without a mask); None: no
        space-wise constraint.
    scale : dict of str to float, optional
        Each layer's constraint is divided by it (default 1).

    Returns
    -------
    Tensor, scalar
        ``mean_b sum_r [ sum_k below * a_n + sum_k a_s + sum_{h,w} bg * sum_k |g_n| ] / scale_r`` with the
        J draws averaged.
    """
    total = None
    for name, g_n in grad_predicted.items():
        a_n = channel_sums(g_n).mean(0)  # (B, K)
        a_s = channel_sums(grad_second[name]).mean(0)
        per_image = (below[name].to(a_n.dtype) * a_n).sum(1) + a_s.sum(1)
        if background is not None and background.get(name) is not None:
            spatial = g_n.abs().sum(2).mean(0)  # (B, h, w)
            per_image = per_image + (background[name].to(spatial.dtype) * spatial).flatten(1).sum(1)
        term = per_image.mean() / float((scale or {}).get(name, 1.0))
        total = term if total is None else total + term
    if total is None:
        raise ValueError("doctor_loss needs at least one layer")
    return total


class DoctorConstraint:
    """Model Doctor's treatment as :func:`hudd.retrain.training.fit`'s ``extra_loss``: ``weight * doctor_loss``.

    Parameters
    ----------
    aggregates : dict of str to ndarray of shape (n_classes, K)
        Raw class aggregates of the constrained layers (from ``hudd doctor``).
    v : float, default=0.5
        Threshold on the normalised aggregates.
    delta : float, default=0.1
    n_draws : int, default=10
    weight : float, default=1.0
        ``lambda``.
    background : Tensor of shape (n_items, H, W), optional
        Background weights in [0, 1] (see :func:`background_masks`; any dtype) of every item of the training data set,
        indexed by the item index the data set returns; rows of zeros for items without a mask.
        None: channel-wise constraint only.
    seed : int, default=0
        Seeds the noise generator (created on the device of the first batch).

    Called as ``constraint(model, images, outputs, targets, indices)`` inside the training loop; runs
    its own forward pass on ``images`` in float32 (outside autocast), with the model in the mode the
    loop left it in.
    """

    def __init__(self, aggregates: Mapping[str, np.ndarray], *, v: float = DEFAULT_V, delta: float = DEFAULT_DELTA, n_draws: int = 10,
                 weight: float = 1.0, background: torch.Tensor | None = None, seed: int = 0):
        self.aggregates = aggregates
        self.v = v
        self.delta = delta
        self.n_draws = n_draws
        self.weight = weight
        self.background = background
        self.seed = seed

    def _prepare(self, device: torch.device) -> None:
        self.layers_ = list(self.aggregates)
        self.below_ = {name: torch.as_tensor(normalise(a) < self.v, device=device) for name, a in self.aggregates.items()}
        self.scale_ = {}
        for name, a in self.aggregates.items():
            totals = np.asarray(a, np.float64).sum(axis=1)
            self.scale_[name] = float(totals[totals > 0].mean()) if (totals > 0).any() else 1.0
        self.background_ = self.background
        self.resized_: dict[tuple, torch.Tensor] = {}
        self.generator_ = torch.Generator(device=device).manual_seed(int(self.seed))
        self.device_ = device

    def _background(self, name: str, size: tuple, indices: torch.Tensor) -> torch.Tensor:
        key = (name, tuple(size))
        if key not in self.resized_:
            self.resized_[key] = _rescale(self.background_, tuple(size)).to(self.device_)
        return self.resized_[key][indices.to(self.device_)]

    def __call__(self, model: nn.Module, images: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor,
                 indices: torch.Tensor) -> torch.Tensor:
        if not hasattr(self, "generator_") or self.device_ != images.device:
            self._prepare(images.device)
        ranked = outputs.detach().float().topk(2, dim=1).indices.T  # (2, B): predicted, second-ranked
        with torch.autocast(device_type=images.device.type, enabled=False):
            _, grads = channel_gradients(model, images.float(), ranked, layers=self.layers_, n_draws=self.n_draws, delta=self.delta,
                                         generator=self.generator_, create_graph=True)
            below = {name: self.below_[name][ranked[0]] for name in self.layers_}
            background = None
            if self.background_ is not None:
                background = {name: self._background(name, g.shape[-2:], indices) for name, g in grads.items() if g.dim() == 6}
            loss = doctor_loss({n: g[0] for n, g in grads.items()}, {n: g[1] for n, g in grads.items()}, below,
                               background=background, scale=self.scale_)
        return self.weight * loss
