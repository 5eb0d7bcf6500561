"""Model rewrites LRP needs before analysis: BatchNorm folded into the preceding convolution.

Works on a copy: :func:`fold_batchnorm` changes the model it is given, and the engine gives it
its own deep copy, so the user's model stays bit-identical.
"""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["fold_batchnorm"]

_FOLDABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> int:
    """Fold every eval-mode BatchNorm that directly follows a convolution or linear layer in an
    ``nn.Sequential`` into that layer, and replace the BatchNorm by ``nn.Identity``.

    ``W' = W * g / sqrt(var + eps)`` per output channel, ``b' = (b - mean) * g / sqrt(var + eps) + beta``.
    Outputs are unchanged up to float rounding. Returns the number of folds.
    """
    folds = 0
    for parent in model.modules():
        if not isinstance(parent, nn.Sequential):
            continue
        names = list(parent._modules)
        for prev_name, name in zip(names, names[1:]):
            layer, norm = parent._modules[prev_name], parent._modules[name]
            if not (isinstance(layer, _FOLDABLE) and isinstance(norm, _NORMS)) or norm.running_var is None:
                continue
            scale = norm.weight / torch.sqrt(norm.running_var + norm.eps) if norm.affine else 1.0 / torch.sqrt(norm.running_var + norm.eps)
            shift = norm.bias if norm.affine else torch.zeros_like(norm.running_mean)
            bias = layer.bias if layer.bias is not None else torch.zeros_like(norm.running_mean)
            layer.weight.copy_(layer.weight * scale.reshape(-1, *([1] * (layer.weight.dim() - 1))))
            new_bias = (bias - norm.running_mean) * scale + shift
            if layer.bias is None:
                layer.bias = nn.Parameter(new_bias)
            else:
                layer.bias.copy_(new_bias)
            parent._modules[name] = nn.Identity()
            folds += 1
    return folds
