"""Composites: which rule each layer gets, as an ordered list of (layer types, rule) pairs.

Dispatch on layer type happens here and nowhere else. Layers without a rule (ReLU, max-pooling,
Flatten, Dropout in eval mode) pass the gradient, which for them *is* LRP: ReLU passes relevance
where it is active, max-pooling gives it to the winner.

Registered composites:

- ``hudd``: the original HUDD tool's assignment. Convolutions (and transposed ones) LRP-0 with
  epsilon 1e-9, fully connected layers z+ with positive weights and no bias, average pooling
  LRP-0, max-pooling winner-takes-all.
- ``epsilon-plus-flat``: zennit's EpsilonPlusFlat. Flat for the first layer, z+ for the other
  convolutions, epsilon 1e-6 for fully connected layers, average pooling normalised by its inputs.
"""

from __future__ import annotations

import torch.nn as nn

from .rules import Epsilon, Flat, Rule, ZPlus

__all__ = ["Composite", "COMPOSITES", "register_composite", "get_composite", "ANALYSED_TYPES", "CONVOLUTIONS", "POOLINGS"]

CONVOLUTIONS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
POOLINGS = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)
ANALYSED_TYPES = CONVOLUTIONS + (nn.Linear,)
"""Layers whose input relevance is a heatmap (the paper's "internal layers")."""


class Composite:
    """An ordered ``[(types, rule), ...]`` map; the first match wins. ``first`` overrides the rule of
    the first analysed layer (the one that sees the pixels)."""

    def __init__(self, layer_map: list[tuple[tuple[type, ...], Rule]], *, first: Rule | None = None):
        self.layer_map = layer_map
        self.first = first

    def rule_for(self, module: nn.Module, *, is_first: bool) -> Rule | None:
        if is_first and self.first is not None:
            return self.first
        for types, rule in self.layer_map:
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
