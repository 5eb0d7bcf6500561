"""The WICD curve of a Ward clustering as engineers inspect it: ``wicd.csv`` and ``wicd.png``."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..cluster.clustering import WardClusters, derivative
from ..core.files import write_csv
from ..workspace.workspace import Workspace
from .plots import plot_wicd

__all__ = ["write_wicd"]


def write_wicd(ws: Workspace, unit: str, ward: WardClusters, title: str) -> None:
    """``wicd.csv`` (k, wicd, derivative) and ``wicd.png`` of a Ward clustering in ``ClusterAnalysis/<unit>/``."""
    shown = ward.ks if len(ward.ks) else np.array([ward.k])
    values = ward.curve[shown - 1]
    slope = derivative(values)
    write_csv(ws.wicd_csv(unit), pd.DataFrame({"k": shown, "wicd": values, "derivative": slope}))
    plot_wicd(ws.wicd_png(unit), shown, values, slope, ward.k, title=f"{title}: k = {ward.k} ({ward.method})")
