"""What the model's forward pass does between its modules, read from a ``torch.fx`` trace.

The engine hooks modules, so it needs to know two things that module order alone does not tell:

- which BatchNorm reads the output of a convolution or linear layer *and nothing else reads it*
  (then the norm can be folded into the layer, wherever the two sit: inside ``nn.Sequential``, a
  residual block, a MobileNet block, ...);
- which sigmoid-like modules are *multiplicative gates* (their output only multiplies another
  tensor, as in squeeze-excitation ``scale * x``).

The trace only reads the model (leaves: every module type the rules know, and torch.nn's own);
it is never run. A model that cannot be traced (data-dependent control flow) gets :data:`None`
and the engine falls back to what module order tells (:func:`sequential_pairs`).
"""

from __future__ import annotations

import operator
from collections import Counter

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from .composites import ANALYSED_TYPES, BATCH_NORMS, GATE_TYPES, PASS_TYPES, POOLINGS

__all__ = ["trace", "foldable_pairs", "sequential_pairs", "gate_modules", "functional_gates", "is_foldable"]

_LEAVES = ANALYSED_TYPES + PASS_TYPES + GATE_TYPES + POOLINGS
_MULTIPLY = {operator.mul, torch.mul}
_SIGMOIDS = {torch.sigmoid, F.sigmoid, F.hardsigmoid}


class _Tracer(fx.Tracer):
    """Keeps every module type the rules know as one node (e.g. torchvision's LayerNorm2d, a LayerNorm subclass)."""

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return isinstance(module, _LEAVES) or super().is_leaf_module(module, qualified_name)


def trace(model: nn.Module) -> tuple[fx.Graph | None, str]:
    """The forward graph of ``model`` and ``""``, or None and why it could not be traced (one line)."""
    try:
        return _Tracer().trace(model), ""
    except Exception as exc:  # noqa: BLE001 - any failure of symbolic tracing means "no graph", never a crash
        return None, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:200]


def is_foldable(layer: nn.Module, norm: nn.Module) -> bool:
    """An eval-mode BatchNorm with running statistics can fold into ``layer`` over its output channels."""
    if not isinstance(norm, BATCH_NORMS) or norm.running_var is None:
        return False
    if isinstance(layer, nn.Linear):
        return layer.out_features == norm.num_features
    if isinstance(layer, nn.modules.conv._ConvTransposeNd):
        return layer.groups == 1 and layer.out_channels == norm.num_features
    return isinstance(layer, nn.modules.conv._ConvNd) and layer.out_channels == norm.num_features


def foldable_pairs(model: nn.Module, graph: fx.Graph) -> list[tuple[str, str]]:
    """``(layer, norm)`` module paths where the norm's only input is the layer's output, the layer's output
    has no other reader, and each module is called once."""
    modules = dict(model.named_modules())
    calls = Counter(node.target for node in graph.nodes if node.op == "call_module")
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or calls[node.target] != 1 or len(node.args) != 1 or node.kwargs:
            continue
        source = node.args[0]
        if not isinstance(source, fx.Node) or source.op != "call_module" or calls[source.target] != 1 or len(source.users) != 1:
            continue
        if is_foldable(modules[source.target], modules[node.target]):
            pairs.append((source.target, node.target))
    return pairs


def sequential_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """Without a graph: ``(layer, norm)`` neighbours inside an ``nn.Sequential``, the only order module paths guarantee."""
    pairs = []
    for parent_name, parent in model.named_modules():
        if not isinstance(parent, nn.Sequential):
            continue
        prefix = f"{parent_name}." if parent_name else ""
        names = list(parent._modules)
        for first, second in zip(names, names[1:]):
            if is_foldable(parent._modules[first], parent._modules[second]):
                pairs.append((prefix + first, prefix + second))
    return pairs


def _is_multiply(node: fx.Node) -> bool:
    return (node.op == "call_function" and node.target in _MULTIPLY) or (node.op == "call_method" and node.target == "mul")


def gate_modules(model: nn.Module, graph: fx.Graph) -> set[str]:
    """Paths of gate-type modules (sigmoid, hard sigmoid) whose every output only multiplies another tensor."""
    modules = dict(model.named_modules())
    verdict: dict[str, bool] = {}
    for node in graph.nodes:
        if node.op == "call_module" and isinstance(modules[node.target], GATE_TYPES):
            gate = bool(node.users) and all(_is_multiply(user) for user in node.users)
            verdict[node.target] = verdict.get(node.target, True) and gate
    return {name for name, gate in verdict.items() if gate}


def functional_gates(graph: fx.Graph) -> list[str]:
    """Names of graph nodes where a sigmoid *function* (not a module) gates a product: the engine cannot hook those."""
    found = []
    for node in graph.nodes:
        sigmoid = (node.op == "call_function" and node.target in _SIGMOIDS) or (node.op == "call_method" and node.target == "sigmoid")
        if sigmoid and node.users and all(_is_multiply(user) for user in node.users):
            found.append(node.name)
    return found
