"""The heatmap of a layer: the LRP relevance at its input (:mod:`hudd.explain.lrp`) summed over channels."""

from __future__ import annotations

import torch

__all__ = ["channel_heatmap"]


def channel_heatmap(relevance: torch.Tensor, *, channels_last: bool = False) -> torch.Tensor:
    """Channel sum of a convolution input ``(B, C, N, M)`` (of ``(B, N, M, C)`` with ``channels_last``: a linear
    layer inside a ConvNeXt block), summed in float32 at least; any other input ``(B, ...)`` flattened to ``(B, 1, D)``."""
    if relevance.dim() == 4:
        return relevance.sum(dim=-1 if channels_last else 1, dtype=torch.promote_types(relevance.dtype, torch.float32))
    return relevance.reshape(len(relevance), 1, -1)
