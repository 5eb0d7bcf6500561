"""The workspace tables that one step writes and later steps (and the report) read back, checked.

``Heatmaps/layers.csv`` and ``Heatmaps/images.csv`` (``hudd heatmaps``), ``summary.csv`` (``hudd cluster``),
``UnsafeSet/unsafe.csv`` and the method the last ``hudd assign`` selected for.
"""

from __future__ import annotations

import pandas as pd

from ..core.errors import HuddError
from ..methods import PAPER
from .readers import read_table, redo
from .workspace import Workspace

__all__ = ["read_layers", "read_index", "read_summary", "read_unsafe", "assigned_method"]


def read_layers(ws, *, every: bool = False) -> pd.DataFrame:
    """``Heatmaps/layers.csv``, checked: the layers with heatmaps, or ``every`` layer (also those left out, with the reason)."""
    layers = read_table(ws.heatmap_layers, {"layer": "str", "alias": "str", "N": "int", "M": "int"}, fix=redo("heatmaps"),
                        keep_default_na=False)
    if "left_out" not in layers or every:
        return layers
    return layers[layers["left_out"].astype(str) == ""].reset_index(drop=True)


def read_index(ws) -> pd.DataFrame:
    """``Heatmaps/images.csv``, checked."""
    return read_table(ws.heatmap_index, {"row": "int", "image": "str"}, fix=redo("heatmaps"))


def read_summary(ws: Workspace) -> pd.DataFrame:
    """``summary.csv``, checked (blank cells stay empty strings)."""
    summary = read_table(ws.summary_csv, {"group": "text", "layer": "str", "selected": "bool"}, fix=redo("cluster"), keep_default_na=False)
    unselected = sorted(set(summary["group"]) - set(summary.loc[summary["selected"], "group"]))
    if unselected or summary.loc[summary["selected"], "group"].duplicated().any():
        raise HuddError(f"{ws.summary_csv}: needs exactly one selected layer per group; {redo('cluster')}")
    return summary


def read_unsafe(ws: Workspace) -> pd.DataFrame:
    """``UnsafeSet/unsafe.csv`` as text (blank label cells empty), checked."""
    return read_table(ws.unsafe_csv, {"image": "str", "cluster": "str"}, fix=redo("assign"), dtype=str, keep_default_na=False)


def assigned_method(ws: Workspace) -> str:
    """The method whose clusters the last ``hudd assign`` selected for (``paper`` before any)."""
    return ((ws.step_entry("assign") or {}).get("config") or {}).get("method", PAPER)
