"""Composites: which rule each layer gets, as an ordered list of (layer types, rule) pairs.

Dispatch on layer type happens here and nowhere else. Layers without a rule (ReLU, max-pooling,
Flatten, Dropout in eval mode, reshaping, concatenation, sums) pass the gradient, which for them
*is* LRP: ReLU passes relevance where it is active, max-pooling gives it to the winner, and a sum
``a + b`` (a residual connection) splits its relevance in proportion to ``a`` and ``b`` (relevance
is input x gradient, and both inputs get the same gradient).

Every composite ends with the same base map (:data:`BASE_MAP`, as zennit's ``layer_map_base``):

- element-wise activations other than ReLU (ReLU6, Hardswish, SiLU/Swish, GELU, sigmoid, tanh, ...):
  :class:`~hudd.explain.lrp.rules.Pass`, the relevance of each output goes to the input at the
  same position, so a self-gated activation ``x * gate(x)`` passes relevance through its signal
  path with the gate treated as a constant;
- normalisations that could not be folded into a preceding layer (a BatchNorm after a sum or a
  concatenation, LayerNorm as in ConvNeXt, GroupNorm, InstanceNorm, LocalResponseNorm): ``Pass``,
  as zennit does for BatchNorm and as the LRP literature's LayerNorm rule does when the
  normalisation's statistics are treated as constants (Ali et al., ICML 2022).

Multiplicative gates between two tensors (squeeze-excitation ``scale * x``, the gate a sigmoid or
hard sigmoid module, :data:`GATE_TYPES`) are the engine's: the gate's output is a constant, so
all relevance goes to ``x`` and none into the gate's branch.

Registered composites:

- ``hudd``: the original HUDD tool's assignment. Convolutions (and transposed ones) LRP-0 with
  epsilon 1e-9, fully connected layers z+ with positive weights and no bias, average pooling
  LRP-0, max-pooling winner-takes-all.
- ``epsilon-plus-flat``: zennit's EpsilonPlusFlat. Flat for the first layer, z+ for the other
  convolutions, epsilon 1e-6 for fully connected layers, average pooling normalised by its inputs.
"""

from __future__ import annotations

import torch.nn as nn

from .rules import Epsilon, Flat, Pass, Rule, ZPlus

__all__ = ["Composite", "COMPOSITES", "register_composite", "get_composite", "ANALYSED_TYPES", "CONVOLUTIONS", "POOLINGS",
           "BATCH_NORMS", "NORMS", "ACTIVATIONS", "PASS_TYPES", "GATE_TYPES", "BASE_MAP"]

CONVOLUTIONS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
POOLINGS = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)
ANALYSED_TYPES = CONVOLUTIONS + (nn.Linear,)
"""Layers whose input relevance is a heatmap (the paper's "internal layers")."""
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
NORMS = BATCH_NORMS + (nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d, nn.LocalResponseNorm)
ACTIVATIONS = (nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish, nn.Hardswish,
               nn.Hardtanh, nn.Softplus, nn.Tanh, nn.Sigmoid, nn.Hardsigmoid, nn.Softsign, nn.Tanhshrink, nn.Threshold)
"""Element-wise activations that get ``Pass`` (ReLU needs no rule: its gradient is already LRP's)."""
PASS_TYPES = ACTIVATIONS + NORMS
GATE_TYPES = (nn.Sigmoid, nn.Hardsigmoid)
"""Modules that gate a product when their output only multiplies another tensor (see :mod:`hudd.explain.lrp.graph`)."""
BASE_MAP: list[tuple[tuple[type, ...], Rule]] = [(PASS_TYPES, Pass())]


class Composite:
    """An ordered ``[(types, rule), ...]`` map, then :data:`BASE_MAP`; the first match wins. ``first``
    overrides the rule of the first analysed layer (the one that sees the pixels)."""

    def __init__(self, layer_map: list[tuple[tuple[type, ...], Rule]], *, first: Rule | None = None):
        self.layer_map = layer_map
        self.first = first

    def rule_for(self, module: nn.Module, *, is_first: bool) -> Rule | None:
        if is_first and self.first is not None:
            return self.first
        for types, rule in [*self.layer_map, *BASE_MAP]:
            if isinstance(module, types):
                return rule
        return None


COMPOSITES: dict[str, callable] = {}


def register_composite(name: str):
    """Decorator adding a composite factory to :data:`COMPOSITES`."""

    def decorate(factory):
        if name in COMPOSITES:
            raise ValueError(f"composite {name!r} is already registered")
        COMPOSITES[name] = factory
        return factory

    return decorate


def get_composite(name: str) -> Composite:
    """A fresh composite by name; an unknown name is a ValueError listing the known ones."""
    if name not in COMPOSITES:
        raise ValueError(f"unknown LRP rule set {name!r}; known: {', '.join(sorted(COMPOSITES))}")
    return COMPOSITES[name]()


@register_composite("hudd")
def _hudd() -> Composite:
    return Composite([(CONVOLUTIONS, Epsilon(1e-9)), (POOLINGS, Epsilon(1e-9)), ((nn.Linear,), ZPlus(1e-6, zero_bias=True))])


@register_composite("epsilon-plus-flat")
def _epsilon_plus_flat() -> Composite:
    return Composite([(CONVOLUTIONS, ZPlus(1e-6, zero_bias=False)), (POOLINGS, Epsilon(1e-6)), ((nn.Linear,), Epsilon(1e-6))], first=Flat(1e-6))
