"""Model rewrites LRP needs before analysis, made on the engine's own copy of the model.

- In-place operations become out-of-place (``inplace=False`` on every module that has the flag),
  so a hooked output can be modified in place by the forward code that follows it.
- Every eval-mode BatchNorm that directly follows a convolution or linear layer, and is the only
  reader of its output, is folded into it and replaced by ``nn.Identity``: inside ``nn.Sequential``,
  residual blocks, MobileNet and EfficientNet blocks alike (found on the ``torch.fx`` trace, see
  :mod:`hudd.explain.lrp.graph`; a model that cannot be traced folds ``nn.Sequential`` neighbours only).
- Sigmoid-like modules whose output only multiplies another tensor are reported as gates.
- A leaf module with parameters that no rule covers is refused (:class:`UnsupportedLayer`): its
  relevance would silently be wrong.

:func:`fold_batchnorm` changes the model it is given; the engine gives it its own deep copy, so the
user's model stays bit-identical.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn

from .composites import ANALYSED_TYPES, Composite
from .graph import foldable_pairs, functional_gates, gate_modules, sequential_pairs, trace

__all__ = ["UnsupportedLayer", "Canonized", "canonize", "fold_batchnorm", "out_of_place", "check_supported"]


class UnsupportedLayer(ValueError):
    """A module of the model that LRP has no rule for; the message names its path and type in one line."""


@dataclass
class Canonized:
    """What :func:`canonize` did: the folded ``(layer, norm)`` pairs, the gate modules, and notes for the user."""

    folds: list[tuple[str, str]] = field(default_factory=list)
    gates: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)


def out_of_place(model: nn.Module) -> None:
    """Set ``inplace=False`` on every module that has the flag (ReLU, Hardswish, Dropout, ...)."""
    for module in model.modules():
        if isinstance(getattr(module, "inplace", None), bool):
            module.inplace = False


@torch.no_grad()
def _fold(model: nn.Module, layer_name: str, norm_name: str) -> None:
    """``W' = W * g / sqrt(var + eps)`` per output channel, ``b' = (b - mean) * g / sqrt(var + eps) + beta``."""
    layer, norm = model.get_submodule(layer_name), model.get_submodule(norm_name)
    scale = torch.rsqrt(norm.running_var + norm.eps)
    if norm.affine:
        scale = scale * norm.weight
    shift = norm.bias if norm.affine else torch.zeros_like(norm.running_mean)
    axis = 1 if isinstance(layer, nn.modules.conv._ConvTransposeNd) else 0
    shape = [1] * layer.weight.dim()
    shape[axis] = -1
    layer.weight.mul_(scale.reshape(shape).to(layer.weight.dtype))
    bias = layer.bias if layer.bias is not None else torch.zeros_like(norm.running_mean)
    new_bias = ((bias - norm.running_mean) * scale + shift).to(layer.weight.dtype)
    if layer.bias is None:
        layer.bias = nn.Parameter(new_bias, requires_grad=False)
    else:
        layer.bias.copy_(new_bias)
    parent_name, _, child = norm_name.rpartition(".")
    setattr(model.get_submodule(parent_name), child, nn.Identity())


def fold_batchnorm(model: nn.Module, graph=None) -> int:
    """Fold every foldable BatchNorm of ``model`` (in eval mode) into its layer; returns the number of folds.

    ``graph`` is the model's ``torch.fx`` graph (traced here when None); without one, only
    ``nn.Sequential`` neighbours are folded. Outputs are unchanged up to float rounding.
    """
    if graph is None:
        graph, _ = trace(model)
    pairs = foldable_pairs(model, graph) if graph is not None else sequential_pairs(model)
    for layer_name, norm_name in pairs:
        _fold(model, layer_name, norm_name)
    return len(pairs)


def check_supported(model: nn.Module, composite: Composite) -> None:
    """Raise :class:`UnsupportedLayer` for the first leaf module with parameters that is neither analysed nor ruled."""
    for name, module in model.named_modules():
        if next(module.children(), None) is not None or next(module.parameters(recurse=False), None) is None:
            continue
        if not isinstance(module, ANALYSED_TYPES) and composite.rule_for(module, is_first=False) is None:
            raise UnsupportedLayer(f"layer {name} ({type(module).__name__}) has parameters and hudd's LRP has no rule for it "
                                   "(it knows convolutions, linear layers, normalisations and element-wise activations)")


def canonize(model: nn.Module, composite: Composite) -> Canonized:
    """Prepare ``model`` (the engine's copy, in eval mode) for LRP; see the module docstring."""
    check_supported(model, composite)
    out_of_place(model)
    graph, why = trace(model)
    done = Canonized()
    if graph is None:
        done.notes.append(f"the model could not be traced with torch.fx ({why}): BatchNorm folded only inside nn.Sequential, "
                          "no multiplicative gate recognised")
        pairs = sequential_pairs(model)
    else:
        pairs = foldable_pairs(model, graph)
        done.gates = gate_modules(model, graph)
        loose = functional_gates(graph)
        if loose:
            done.notes.append(f"sigmoid functions gate a product at {', '.join(loose)}: relevance also flows into those gates")
    for layer_name, norm_name in pairs:
        _fold(model, layer_name, norm_name)
    done.folds = pairs
    return done
