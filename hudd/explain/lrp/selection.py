"""Which analysed layers give a heatmap worth clustering, found with one pass of one blank image.

A layer is left out (with the reason, in words) when

- its input is the same tensor as the input of an earlier analysed layer (``downsample.0`` beside
  ``conv1`` of a residual block, the branches of an Inception block): relevance is input x
  gradient at that tensor, so its heatmap is the earlier layer's, value for value;
- its heatmap has a single value (a convolution on a 1x1 input, such as the squeeze convolutions
  of squeeze-excitation blocks): nothing to cluster;
- the forward pass never calls it (an auxiliary head, an unused module): it has no relevance.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..heatmaps import channel_heatmap

__all__ = ["Probe", "probe", "channels_last", "SAME_INPUT", "SINGLE_VALUE", "NOT_CALLED"]

SAME_INPUT = "same heatmap as {} (same input)"
SINGLE_VALUE = "single-value heatmap (1x1 input)"
NOT_CALLED = "never called by the forward pass"


class Probe:
    """The input shape of each analysed layer (one image) and the layers to leave out, ``{name: reason}``."""

    def __init__(self, shapes: dict[str, tuple[int, ...]], left_out: dict[str, str]):
        self.shapes = shapes
        self.left_out = left_out


def channels_last(module: nn.Module, shape: tuple[int, ...]) -> bool:
    """A linear layer on a tensor of more than two dimensions mixes its last one (channels last, as in ConvNeXt)."""
    return isinstance(module, nn.Linear) and len(shape) > 2


def probe(run, analysed: list[tuple[str, nn.Module]], input_shape, *, device, dtype) -> Probe:
    """``run(x)`` (a forward pass, or a whole LRP pass) once on a blank ``(1, *input_shape)`` image ``x``, then judge
    each analysed layer (module docstring)."""
    first_reader: dict[int, str] = {}
    inputs: dict[str, torch.Tensor] = {}
    left_out: dict[str, str] = {}

    def recorder(name):
        def pre_hook(module, args):
            x = args[0]
            inputs[name] = x  # keeps every input alive, so no two of them share an id
            if name not in left_out:
                earlier = first_reader.setdefault(id(x), name)
                if earlier != name:
                    left_out[name] = SAME_INPUT.format(earlier)
        return pre_hook

    handles = [module.register_forward_pre_hook(recorder(name)) for name, module in analysed]
    try:
        run(torch.zeros(1, *input_shape, device=device, dtype=dtype))
    finally:
        for handle in handles:
            handle.remove()
    shapes = {}
    for name, module in analysed:
        if name not in inputs:
            left_out[name] = NOT_CALLED
            continue
        shape = tuple(inputs[name].shape)
        shapes[name] = shape
        heatmap = channel_heatmap(torch.zeros(shape), channels_last=channels_last(module, shape))
        if name not in left_out and heatmap[0].numel() == 1:
            left_out[name] = SINGLE_VALUE
    return Probe(shapes, {name: left_out[name] for name, _ in analysed if name in left_out})
