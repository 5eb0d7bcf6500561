"""The names of the root-cause clustering methods, in one place for the steps, the CLI and the report.

``paper`` is HUDD's Step 1 as published (LRP heatmaps of every layer, Ward, WICD knee, layer of
minimal WICD; :mod:`hudd.steps.cluster`); the feature methods (:mod:`hudd.steps.feature_cluster`)
cluster feature vectors and live in ``ClusterAnalysis/<method>/``.
"""

from __future__ import annotations

__all__ = ["PAPER", "FEATURE_METHODS", "METHOD_NAMES"]

PAPER = "paper"
FEATURE_METHODS = ("blackbox", "pretrained", "naive")
METHOD_NAMES = (PAPER, *FEATURE_METHODS)
