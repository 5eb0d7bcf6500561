"""Model Doctor's diagnosis: the gradients of the class scores on the channels of the deep convolutional
layers (:class:`FeatureTap`, :func:`channel_gradients`), their per-image and per-class correlations
(equation 4) and the channels behind each error (:func:`diagnose`).

The notation, how the gradients are taken and the design choices are in :mod:`hudd.retrain.doctor`; the
treatment built on these gradients is :mod:`hudd.retrain.doctor_treatment`.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import torch
import torch.nn as nn

from ..core.progress import progress

__all__ = [
    "DEFAULT_DELTA", "DEFAULT_V", "default_layers", "conv_layers", "FeatureTap", "channel_gradients", "channel_sums",
    "image_channel_correlation", "class_channel_correlation", "normalise", "diagnose",
]

DEFAULT_DELTA = 0.1
DEFAULT_V = 0.5


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


def channel_sums(gradient: torch.Tensor) -> torch.Tensor:
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
                chunks[name].append(channel_sums(grad[0]).mean(0).detach().cpu().numpy().astype(np.float32))
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
