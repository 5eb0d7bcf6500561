"""The names of root-cause clusters and of their ``ClusterAnalysis/`` sub-folders."""

from __future__ import annotations

__all__ = ["cluster_name", "unit_name"]


def cluster_name(group: str, label: int) -> str:
    """``C<label+1>``, prefixed with the keypoint group when there is one (``mouth-C3``)."""
    return f"{group}-C{label + 1}" if group else f"C{label + 1}"


def unit_name(group: str, layer: str) -> str:
    """The ClusterAnalysis sub-folder of a layer (and group)."""
    return f"{group}/{layer}" if group else layer
