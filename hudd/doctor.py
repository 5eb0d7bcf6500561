"""Model Doctor (Feng et al., AAAI 2022): diagnose a classifier by the gradients of its class scores on the
channels of its deep convolutional layers, and treat it with the channel-wise and space-wise constraints.

Notation (the paper's): a feature map ``m_k^r`` is channel ``k`` of the output of convolutional layer
``r`` (the module's output, before its activation, so the layer is named by its ``named_modules()``
path as everywhere in hudd); ``y_n`` is the logit of class ``n``; ``sigma^j`` is the j-th of ``J`` noise
draws, uniform in ``[-delta, delta]``, added to the feature map. For one image the correlation of
channel ``k`` with class ``n`` is equation 4::

    a_k^{n,r} = 1/J sum_j sum_{h,w} |d y_n / d (m_k^r + sigma^j)|

and the class aggregate ``A[n, k]`` is its mean over ``T`` confident training images of class ``n``
(:func:`class_channel_correlation`; the paper's Fig. 2 uses the sum, which only rescales). Arrays:
per image ``(N, K)``, per class ``(n_classes, K)``; gradients ``(J, B, K, h, w)``.

How the gradients are taken: forward hooks on the chosen layers (:class:`FeatureTap`). The first
hooked layer (in forward order) repeats its output ``copies`` times along the batch (copy ``c`` of
image ``b`` at row ``c * B + b``), so the layers before it run once and the ``J`` noise draws (and, in
the treatment, the predicted and the second-ranked class) are one batched pass; each hooked layer
adds its own noise (drawn from a seeded :class:`torch.Generator`, so the same seed gives the same
numbers) and keeps the noisy map, a node of the graph. One ``torch.autograd.grad`` of the summed
selected logits then gives every row's gradient at once (rows are independent in eval mode, and
without BatchNorm in train mode), with ``create_graph=True`` when the result is a training loss.
The repetition assumes nothing computed before the first hooked layer is used after it (true of
the sequential architectures in :mod:`hudd.models`); when the model fails or returns the wrong
number of rows (a skip connection around the layer), the input is repeated instead, which costs
the layers before it ``copies`` times.

Design choices (where the paper leaves them open):

- layers: by default the last two ``Conv2d`` layers of the model ("deep layers");
- ``delta`` 0.1 by default, in the units of the feature map (alexnet-small's deep maps have a
  standard deviation of 3-5 on the demo, so the noise perturbs without drowning them);
- the aggregates are stored raw (the paper's values) and normalised per class to a maximum of 1
  (:func:`normalise`) wherever a threshold is applied, so ``v`` is scale-free: channel ``k`` is
  "unrelated" to class ``n`` when ``A[n, k] / max_k A[n, k] < v`` (default ``v`` = 0.5);
- equation 5 uses the predicted class ``y_n`` and the second-ranked class ``y_s`` (of the clean
  forward pass), as the paper; the ``J`` draws are averaged (the paper sums: a factor ``J``);
- each layer's constraint is divided by that layer's mean aggregate total ``mean_n sum_k A[n, k]``
  (how much gradient a confident training image puts on all channels), so the loss is about 1
  before treatment whatever the model's scale, and ``lambda`` (default 1) weighs it against the
  cross-entropy; it is averaged over the batch;
- space-wise constraint (equation 6): a foreground mask (1 on the object) is dilated by
  :func:`dilation_px` pixels (30/224 of the image side: the paper's best 30 px expansion at 224 px;
  9 px at 64 px) and inverted into the background mask (the paper's background mask "eroded to
  preserve the object boundary"), then area-averaged to each layer's feature-map size; images
  without a mask get no space-wise term (the paper annotated only some images);
- diagnosis: an error-inducing image's correlations with its *predicted* class, normalised to a
  maximum of 1, minus that class's normalised aggregate; the channels with the largest absolute
  departure are the diagnosis (positive: the image leans on a channel the class does not use;
  negative: it misses one the class relies on).
"""

from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .progress import progress

__all__ = [
    "DEFAULT_DELTA", "DEFAULT_V", "MASK_DILATION", "dilation_px", "default_layers", "conv_layers", "FeatureTap", "channel_gradients",
    "image_channel_correlation", "class_channel_correlation", "normalise", "diagnose", "background_masks", "doctor_loss", "DoctorConstraint",
]

DEFAULT_DELTA = 0.1
DEFAULT_V = 0.5
MASK_DILATION = 30 / 224  # the paper's best mask expansion (Table 3: 30 px), as a share of a 224 px image side


def dilation_px(size: int) -> int:
    """Pixels by which a foreground mask of a ``size`` px image is dilated: :data:`MASK_DILATION` of its side, at least 1."""
    return max(1, int(round(size * MASK_DILATION)))


def conv_layers(model: nn.Module) -> list[str]:
    """Names (``named_modules()`` paths) of the model's ``Conv2d`` layers, in registration order."""
    return [name for name, module in model.named_modules() if isinstance(module, nn.Conv2d)]


def default_layers(model: nn.Module, n_layers: int = 2) -> list[str]:
    """The last ``n_layers`` convolutional layers: the "deep layers" the paper constrains.

    Raises
    ------
    ValueError
        The model has no ``Conv2d`` layer.
    """
    names = conv_layers(model)
    if not names:
        raise ValueError("the model has no convolutional layer for Model Doctor")
    return names[-n_layers:]


class FeatureTap:
    """Forward hooks that repeat, perturb and keep the feature maps of ``layers`` (a context manager).

    Parameters
    ----------
    model : nn.Module
    layers : sequence of str
        ``named_modules()`` paths; an unknown one is a ValueError listing the valid ones.
    copies : int
        How many times the first hooked layer repeats its output along the batch.
    delta : float
        Half-width of the uniform noise added to every hooked map (0: none).
    generator : torch.Generator or None
        Source of the noise (on the maps' device).

    After a forward pass inside the ``with`` block, ``maps[layer]`` is the noisy map
    ``(copies * B, K, h, w)`` that the rest of the network saw.
    """

    def __init__(self, model: nn.Module, layers, *, copies: int = 1, delta: float = 0.0, generator: torch.Generator | None = None):
        self.model = model
        self.layers = list(layers)
        self.copies = copies
        self.delta = delta
        self.generator = generator
        self.maps: dict[str, torch.Tensor] = {}
        self._handles: list = []

    def __enter__(self) -> "FeatureTap":
        modules = dict(self.model.named_modules())
        unknown = [name for name in self.layers if name not in modules]
        if unknown:
            raise ValueError(f"unknown layer {unknown[0]!r}; convolutional layers: {', '.join(conv_layers(self.model))}")
        try:
            for name in self.layers:
                self._handles.append(modules[name].register_forward_hook(self._hook(name)))
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _hook(self, name: str):
        def hook(module, args, output):
            if not self.maps and self.copies > 1:
                output = output.repeat(self.copies, *([1] * (output.dim() - 1)))
            if self.delta:
                noise = torch.rand(output.shape, generator=self.generator, device=output.device, dtype=torch.float32)
                output = output + ((noise * 2.0 - 1.0) * self.delta).to(output.dtype)
            else:
                output = output * 1.0  # a node of its own to differentiate against
            if torch.is_grad_enabled() and not output.requires_grad:  # frozen weights: the graph starts at the map
                output.requires_grad_(True)
            self.maps[name] = output
            return output

        return hook


def channel_gradients(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, *, layers, n_draws: int = 10,
                      delta: float = DEFAULT_DELTA, generator: torch.Generator | None = None,
                      create_graph: bool = False) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``d y_target / d (m + sigma^j)`` at every layer, for ``P`` target classes per image, in one pass.

    Parameters
    ----------
    model : nn.Module
        A classifier (its mode is left as it is: eval for the diagnosis, train in the treatment).
    images : Tensor of shape (B, C, H, W)
    targets : LongTensor of shape (P, B)
        The class whose logit is differentiated, per image, for each of ``P`` target sets.
    layers : sequence of str
    n_draws : int, default=10
        ``J``, the noise draws.
    delta : float, default=0.1
    generator : torch.Generator, optional
    create_graph : bool, default=False
        Keep the graph of the gradients (True for a training loss).

    Returns
    -------
    outputs : Tensor of shape (P * J * B, n_classes)
        The logits of the perturbed copies.
    gradients : dict of str to Tensor of shape (P, J, B, K, h, w)
        Signed gradients, per layer.
    """
    n_sets, batch = targets.shape
    copies = n_sets * n_draws
    try:
        with torch.enable_grad(), FeatureTap(model, layers, copies=copies, delta=delta, generator=generator) as tap:
            outputs = model(images)
        repeated = outputs.shape[0] == copies * batch
    except RuntimeError:  # a tensor from before the first hooked layer meets one after it (a skip connection)
        repeated = False
    if not repeated:  # then repeat the input instead: every layer runs on all copies
        with torch.enable_grad(), FeatureTap(model, layers, delta=delta, generator=generator) as tap:
            outputs = model(images.repeat(copies, *([1] * (images.dim() - 1))))
    missing = [name for name in layers if name not in tap.maps]
    if missing:
        raise ValueError(f"layer {missing[0]!r} was not used in the forward pass")
    rows = targets.to(outputs.device).repeat_interleave(n_draws, dim=0).reshape(-1, 1)
    picked = outputs.float().gather(1, rows).sum()
    maps = [tap.maps[name] for name in layers]
    grads = torch.autograd.grad(picked, maps, create_graph=create_graph)
    return outputs, {name: g.reshape(n_sets, n_draws, batch, *g.shape[1:]) for name, g in zip(layers, grads)}


def _channel_sums(gradient: torch.Tensor) -> torch.Tensor:
    """``(..., K, h, w)`` -> ``(..., K)``: the paper's summed |gradient| of each channel."""
    return gradient.abs().flatten(gradient.dim() - 2).sum(-1) if gradient.dim() >= 4 else gradient.abs()


def image_channel_correlation(model: nn.Module, batches: Iterable, *, layers, n_draws: int = 10, delta: float = DEFAULT_DELTA,
                              generator: torch.Generator | None = None, device: torch.device | str = "cpu",
                              desc: str = "doctor") -> dict[str, np.ndarray]:
    """Equation 4 for every image: ``a[i, k]`` of the given class, per layer.

    Parameters
    ----------
    model : nn.Module
        Used in eval mode (restored afterwards); its weights are not changed.
    batches : iterable of (images, classes)
        ``images`` ``(B, C, H, W)`` and ``classes`` ``(B,)`` long: whose logit to differentiate.
    layers, n_draws, delta, generator
        See :func:`channel_gradients`.
    device : torch.device or str

    Returns
    -------
    dict of str to ndarray of float32, shape (N, K)
    """
    device = torch.device(device)
    was_training = model.training
    model.eval().to(device)
    chunks: dict[str, list] = {name: [] for name in layers}
    try:
        for images, classes in progress(batches, desc=desc, unit="batch"):
            images = images.to(device, torch.float32)
            _, grads = channel_gradients(model, images, torch.as_tensor(classes).long().reshape(1, -1).to(device), layers=layers,
                                         n_draws=n_draws, delta=delta, generator=generator)
            for name, grad in grads.items():
                chunks[name].append(_channel_sums(grad[0]).mean(0).detach().cpu().numpy().astype(np.float32))
    finally:
        model.train(was_training)
    return {name: np.concatenate(parts) if parts else np.zeros((0, 0), np.float32) for name, parts in chunks.items()}


def class_channel_correlation(model: nn.Module, batches: Iterable, *, n_classes: int, layers, n_draws: int = 10,
                              delta: float = DEFAULT_DELTA, generator: torch.Generator | None = None,
                              device: torch.device | str = "cpu", desc: str = "doctor") -> dict[str, np.ndarray]:
    """The class aggregates ``A[n, k]``: the mean of equation 4 over each class's images (0 for a class without any).

    ``batches`` yields ``(images, classes)`` as in :func:`image_channel_correlation`; give it the
    ``T`` most confident, correctly classified training images of each class.

    Returns
    -------
    dict of str to ndarray of float32, shape (n_classes, K)
    """
    labels = []

    def recorded():
        for images, classes in batches:
            labels.append(np.asarray(torch.as_tensor(classes).cpu()).reshape(-1))
            yield images, classes

    per_image = image_channel_correlation(model, recorded(), layers=layers, n_draws=n_draws, delta=delta, generator=generator,
                                          device=device, desc=desc)
    labels = np.concatenate(labels) if labels else np.zeros(0, np.int64)
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    result = {}
    for name, values in per_image.items():
        sums = np.zeros((n_classes, values.shape[1] if values.size else 0), np.float64)
        np.add.at(sums, labels, values.astype(np.float64))
        result[name] = (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)
    return result


def normalise(correlation: np.ndarray) -> np.ndarray:
    """Each row divided by its maximum (rows of zeros stay zero): ``(n, K)`` -> ``(n, K)`` in [0, 1]."""
    correlation = np.asarray(correlation, dtype=np.float64)
    peak = correlation.max(axis=1, keepdims=True) if correlation.size else np.ones((len(correlation), 1))
    return np.divide(correlation, peak, out=np.zeros_like(correlation), where=peak > 0)


def diagnose(correlation: np.ndarray, classes: np.ndarray, aggregates: np.ndarray, *, top: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """The channels whose correlation departs most from the aggregate of each image's class.

    Parameters
    ----------
    correlation : ndarray of shape (N, K)
        Equation 4 per image (raw).
    classes : ndarray of int, shape (N,)
        The class each image is compared with (its predicted class).
    aggregates : ndarray of shape (n_classes, K)
        Raw class aggregates.
    top : int, default=5

    Returns
    -------
    channels : ndarray of int64, shape (N, min(top, K))
        Channel indices by decreasing absolute departure (ties: lower channel first).
    departure : ndarray of float64, shape (N, min(top, K))
        ``normalise(correlation) - normalise(aggregates)[class]`` at those channels.
    """
    delta = normalise(correlation) - normalise(aggregates)[np.asarray(classes, dtype=np.int64)]
    order = np.argsort(-np.abs(delta), axis=1, kind="stable")[:, :top]
    return order.astype(np.int64), np.take_along_axis(delta, order, axis=1)


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
        a_n = _channel_sums(g_n).mean(0)  # (B, K)
        a_s = _channel_sums(grad_second[name]).mean(0)
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
    """Model Doctor's treatment as :func:`hudd.training.fit`'s ``extra_loss``: ``weight * doctor_loss``.

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
