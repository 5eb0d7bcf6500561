"""Relevance at every analysed layer in one batched forward and one backward pass.

Convention: **the heatmap of layer L is the relevance at the input of L** (as the original HUDD
tool), one entry per analysed layer (convolutions, transposed convolutions, fully connected
layers), keyed by the layer's ``named_modules()`` path. The relevance at the input of the first
layer is the pixel-level heatmap.

How: the model is deep-copied (the user's model stays bit-identical) and prepared on the copy
(:mod:`hudd.explain.lrp.canonize`: in-place operations made out-of-place, BatchNorm folded into
the layer it follows, gates found, unsupported layers refused). Each layer that has a rule gets a
forward hook whose output is

    z.detach() + h - h.detach(),   h = sum_p coef_p * z_p * (z / stabilise(z_p)).detach()

where ``z`` is the layer's normal output and ``z_p`` the rule's modified output (see
:mod:`hudd.explain.lrp.rules`). Its value is exactly ``z``; its gradient is the rule's. Rules whose
modified output is the layer's own (LRP-epsilon) scale the gradient of ``z`` instead, element-wise
layers with ``Pass`` give their input the gradient ``grad * y / x``, and gate modules return a
constant. Then one ``torch.autograd.grad`` from the target, with every analysed layer's input as an
input to differentiate against, gives gradient = relevance / activation everywhere, so
relevance = input x gradient at every layer at once. Layers without a rule pass the gradient,
which is LRP for ReLU (pass), max-pooling (winner takes all), sums (split in proportion to the
summands), concatenation and reshaping.

Targets: for classification the logit of the predicted class (default) or of given classes;
for keypoint models the peak of the map of a given keypoint per image (the original seeds the
keypoint with the largest error; :mod:`hudd.steps.heatmaps` picks it).
"""

from __future__ import annotations

import copy
from collections import Counter

import torch
import torch.nn as nn
from torch.func import functional_call

from ...core.precision import autocast, wide
from ..heatmaps import channel_heatmap
from .canonize import UnsupportedLayer, canonize
from .composites import ANALYSED_TYPES, CONVOLUTIONS, Composite, get_composite
from .rules import Pass, Rule, for_nonnegative, stabilise
from .selection import channels_last, probe

__all__ = ["Explainer", "relevance", "layer_aliases"]

_SEED_SCALE = {torch.float16: 2.0**12}
"""Relevance is linear in the seed: under float16 the seed is scaled up (by a power of two, so the scaling back is exact)
to keep the gradients, relevance over activation, above float16's smallest normal numbers (6e-5), as a gradient scaler
does in training; bfloat16 has float32's range and needs none."""


class _PassThrough(torch.autograd.Function):
    """Value ``y``; gradient to ``x`` is ``grad * y / stabilise(x)``, so that relevance ``x * grad_x`` equals ``y * grad``."""

    @staticmethod
    def forward(ctx, x, y, epsilon):
        ctx.save_for_backward(wide(y) / stabilise(wide(x), epsilon))
        ctx.dtype = x.dtype
        return y.clone()  # a new tensor: the forward code may modify it in place

    @staticmethod
    def backward(ctx, grad):
        (ratio,) = ctx.saved_tensors
        return (grad * ratio).to(ctx.dtype), None, None


def layer_aliases(names_and_modules: list[tuple[str, nn.Module]]) -> dict[str, str]:
    """Readable aliases in forward order: ``conv1``.., ``deconv1``.. (transposed), ``fc1``..."""
    counts: Counter = Counter()
    aliases = {}
    for name, module in names_and_modules:
        kind = "deconv" if isinstance(module, CONVOLUTIONS) and "Transpose" in type(module).__name__ else ("conv" if isinstance(module, CONVOLUTIONS) else "fc")
        counts[kind] += 1
        aliases[name] = f"{kind}{counts[kind]}"
    return aliases


class Explainer:
    """LRP for one model and one composite, prepared once and applied batch after batch.

    Parameters
    ----------
    model : nn.Module
        The model (left untouched; a copy is analysed).
    composite : str or Composite, default="hudd"
        A registered composite's name (see :mod:`hudd.explain.lrp.composites`) or a Composite.
    layers : sequence of str, optional
        Analysed layers to return (default: all of them that give a useful heatmap). An unknown name
        is a ValueError listing the valid ones.
    device : torch.device or str, default="cpu"
    precision : torch.dtype, default=torch.float32
        The arithmetic of the forward and relevance passes (:mod:`hudd.core.precision`). With bfloat16 or
        float16 the convolutions and matrix products run under autocast, while each rule's ratio
        ``z / stabilise(z_p)``, the pass-through ratios and the relevance ``x * gradient`` are computed in
        float32, so the stabilisers (epsilon down to 1e-12) keep their meaning and no ratio overflows; the
        relevance is returned in float32.
    input_shape : tuple of int, optional
        ``(C, H, W)`` of one input. With it and without ``layers``, one LRP pass of a blank image finds
        the layers whose heatmap is a duplicate or a single value (:mod:`hudd.explain.lrp.selection`),
        left out of :attr:`layers` and listed in :attr:`left_out` with the reason, and what LRP cannot
        pass (:class:`UnsupportedLayer` here rather than at the first batch).

    Attributes
    ----------
    all_layers : list of str
        Every analysed layer, in module order. ``layers`` are those whose relevance is returned.
    left_out : dict of str to str
        Layer -> why it is not in ``layers`` (empty without ``input_shape``).
    input_shapes : dict of str to tuple
        Layer -> the shape of its input for one image (empty without ``input_shape``).
    notes : list of str
        What the preparation could not do for this model (one line each), for the user.

    Raises
    ------
    UnsupportedLayer (a ValueError)
        A module with parameters that no rule covers, a pass-through module that changes its input's
        shape, a layer input that the forward code modifies in place; the message names the layer.
    """

    def __init__(self, model: nn.Module, *, composite: "str | Composite" = "hudd", layers=None, device="cpu", input_shape=None,
                 precision: torch.dtype = torch.float32):
        self.device = torch.device(device)
        self.precision = precision
        self.model = copy.deepcopy(model).eval().to(self.device)
        for param in self.model.parameters():
            param.requires_grad_(False)
        composite_map = get_composite(composite) if isinstance(composite, str) else composite
        prepared = canonize(self.model, composite_map)
        self.notes = prepared.notes
        analysed = [(name, m) for name, m in self.model.named_modules() if isinstance(m, ANALYSED_TYPES)]
        if not analysed:
            raise ValueError("the model has no convolutional or fully connected layer to analyse")
        self.all_layers = [name for name, _ in analysed]
        self.aliases = layer_aliases(analysed)
        self.left_out: dict[str, str] = {}
        self.input_shapes: dict[str, tuple[int, ...]] = {}
        self._analysed = dict(analysed)
        self.layers = list(self.all_layers)
        if layers:
            unknown = [name for name in layers if name not in self.all_layers]
            if unknown:
                raise ValueError(f"unknown layer {unknown[0]!r}; valid layers: {', '.join(self.all_layers)}")
            self.layers = [name for name in self.all_layers if name in set(layers)]
        self._sources: dict[str, torch.Tensor] | None = None
        self._versions: dict[str, int] = {}
        self._busy = False
        self._hook(composite_map, prepared.gates)
        if not layers and input_shape is not None:  # a whole pass on a blank image: also any layer LRP cannot pass
            dtype = next(self.model.parameters()).dtype
            probed = probe(lambda x: self._explain(x, torch.zeros(1, dtype=torch.long)), analysed, tuple(input_shape),
                           device=self.device, dtype=dtype)
            self.left_out, self.input_shapes = probed.left_out, probed.shapes
            self.layers = [name for name in self.all_layers if name not in self.left_out]

    def _hook(self, composite_map: Composite, gates: set[str]) -> None:
        """A forward hook on every module with a rule, a pass-through or a gate."""
        for name, module in self.model.named_modules():
            if name in gates:
                module.register_forward_hook(self._gate_hook)
                continue
            rule = composite_map.rule_for(module, is_first=name == self.all_layers[0])
            if isinstance(rule, Pass):
                module.register_forward_hook(self._make_pass_hook(name, rule))
            elif rule is not None:
                module.register_forward_hook(self._make_hook(name, module, rule))

    def heatmap(self, name: str, relevance: torch.Tensor) -> torch.Tensor:
        """The heatmap of layer ``name`` from its relevance: the channel sum (see :func:`hudd.explain.heatmaps.channel_heatmap`)."""
        return channel_heatmap(relevance, channels_last=channels_last(self._analysed[name], tuple(relevance.shape)))

    def _gate_hook(self, module, args, output):
        return None if self._sources is None else output.detach()

    def _make_pass_hook(self, name: str, rule: Pass):
        def hook(module, args, output):
            if self._sources is None or self._busy or not torch.is_tensor(output) or not output.requires_grad:
                return None
            x = args[0]
            if x.shape != output.shape:
                raise UnsupportedLayer(f"layer {name} ({type(module).__name__}) changes the shape of its input; hudd's LRP "
                                       "passes relevance through it element by element and cannot")
            return _PassThrough.apply(x, output.detach(), rule.epsilon)

        return hook

    def _make_hook(self, name: str, module: nn.Module, rule: Rule):
        params = dict(module.named_parameters(recurse=False))
        prepared = []
        for coef, terms in rule.parts:
            prepared_terms = []
            for in_mod, weight_mod, bias_mod in terms:
                modified = {}
                if "weight" in params:
                    modified["weight"] = weight_mod(params["weight"]).detach()
                if "bias" in params and params["bias"] is not None:
                    modified["bias"] = bias_mod(params["bias"]).detach() if bias_mod is not None else torch.zeros_like(params["bias"])
                prepared_terms.append((in_mod, modified))
            prepared.append((coef, prepared_terms))
        sign_dependent = rule.sign_dependent

        def hook(mod, args, output):
            if self._sources is None or self._busy:
                return None
            x = args[0]
            source = x if rule.uses_input else torch.ones_like(x).requires_grad_(True)
            if name in self.layers:
                self._sources[name] = source
                self._versions[name] = source._version
            if rule.is_identity:  # z / stabilise(z) == |z| / (|z| + epsilon): scale the gradient arriving at z
                if rule.epsilon and output.requires_grad:
                    magnitude = wide(output.detach()).abs()
                    factor = magnitude.div_(magnitude + rule.epsilon)
                    output.register_hook(lambda grad: (grad * factor).to(grad.dtype))
                return None
            nonnegative = sign_dependent and bool((source.detach().min() >= 0).item())
            self._busy = True
            try:
                parts = []
                for coef, terms in prepared:
                    total = 0
                    for in_mod, modified in terms:
                        in_mod = for_nonnegative(in_mod) if nonnegative else in_mod
                        if in_mod is not None:
                            total = total + functional_call(mod, modified, (in_mod(source),))
                    parts.append((coef, total))
            finally:
                self._busy = False
            z = output.detach()
            h = sum(coef * z_p * (wide(z) / stabilise(wide(z_p.detach()), rule.epsilon)) for coef, z_p in parts)
            return z + (h - h.detach()).to(z.dtype)

        return hook
    def relevance(self, images: torch.Tensor, target=None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Relevance at the input of every selected layer for a batch.

        Parameters
        ----------
        images : Tensor of shape (B, C, H, W)
            Normalised model inputs.
        target : None, or LongTensor of shape (B,)
            Classification: the class whose logit is explained (None = the predicted class).
            Keypoints: the keypoint whose map peak is explained (required).

        Returns
        -------
        outputs : Tensor
            The model's outputs for the batch (detached), unchanged by the analysis.
        relevance : dict of str to Tensor
            Layer name -> relevance with the shape of that layer's input, in the model's dtype (float32 under a reduced
            :attr:`precision`), on the device.
        """
        return self._explain(images, target)

    def _explain(self, images: torch.Tensor, target) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """:meth:`relevance`'s pass, also the layer probe's (which is no batch of the caller's)."""
        dtype = next(self.model.parameters()).dtype
        images = images.detach().to(self.device, dtype).clone().requires_grad_(True)
        self._sources = {}
        try:
            with torch.enable_grad():
                with autocast(self.device, self.precision):
                    outputs = self.model(images)
                if target is None:
                    if outputs.dim() != 2:
                        raise ValueError("a keypoint model needs the keypoint to explain as target")
                    target = outputs.detach().argmax(dim=1)
                target = torch.as_tensor(target, device=self.device).long()
                picked = wide(outputs)[torch.arange(len(images), device=self.device), target]
                seed = picked.flatten(1).amax(dim=1).sum() if picked.dim() > 1 else picked.sum()
                seed = seed * _SEED_SCALE.get(self.precision, 1.0)
                names = [name for name in self.layers if name in self._sources]
                sources = [self._sources[name] for name in names]
                for name, source in zip(names, sources):
                    if source._version != self._versions[name]:
                        raise UnsupportedLayer(f"the input of layer {name} is modified in place by the model's forward code "
                                               "after the layer reads it; hudd's LRP cannot explain at that layer")
                grads = torch.autograd.grad(seed, sources, allow_unused=True)
        finally:
            self._sources = None
        result = {}
        for name, source, grad in zip(names, sources, grads):
            result[name] = wide(source.detach()) * (wide(grad) / _SEED_SCALE.get(self.precision, 1.0)) if grad is not None \
                else torch.zeros_like(wide(source))
        return wide(outputs.detach()), result


def relevance(model: nn.Module, images: torch.Tensor, *, target=None, composite: str = "hudd", layers=None) -> dict[str, torch.Tensor]:
    """One-shot convenience: :meth:`Explainer.relevance` on ``images`` (on their device) for ``layers`` (default: every
    analysed layer with a useful heatmap for images of this shape); returns the relevance dict."""
    shape = None if layers else tuple(images.shape[1:])
    return Explainer(model, composite=composite, layers=layers, device=images.device, input_shape=shape).relevance(images, target)[1]
