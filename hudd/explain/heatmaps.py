"""The heatmap of a layer: the LRP relevance at its input (:mod:`hudd.explain.lrp`) summed over channels."""

from __future__ import annotations

import torch

__all__ = ["channel_heatmap"]


def channel_heatmap(relevance: torch.Tensor) -> torch.Tensor:
    """Channel sum of a convolution input ``(B, C, N, M)``; a fully connected input ``(B, D)`` as ``(B, 1, D)``."""
    return relevance.sum(dim=1) if relevance.dim() == 4 else relevance.reshape(len(relevance), 1, -1)
