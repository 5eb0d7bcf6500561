"""Clustering error-inducing images by feature vectors: density clustering (the black-box pipeline, after
SAFE) or Ward with the WICD knee (the pretrained and naive methods).

Ward path (:func:`ward_features`): standardise every feature, Euclidean distances, Ward, and k
at the knee of the WICD curve (:func:`hudd.cluster.clustering.ward_clusters`, the same kernel as HUDD's
Step 1b), or a fixed k. The rest of this docstring is the density path (:func:`cluster_features`).

Notation: ``n`` error-inducing images, ``d`` features each (``features`` is ``(n, d)``). Plain
functions over arrays, no files; the same ``seed`` gives the same labels.

1. **Standardise** every feature to zero mean and unit variance (a constant feature becomes 0),
   so no feature dominates the distances by its scale alone.
2. **Reduce**, in two stages. PCA to ``min(50, n - 1, d)`` components removes the directions that
   are noise. Then the *clustering space*: with ``reducer="umap"`` (the default when umap-learn is
   installed: ``pip install 'hudd[umap]'``), UMAP to 2 dimensions (``n_neighbors=15``,
   ``min_dist=0``, as UMAP's docs advise for clustering: it keeps neighbourhoods, so clusters stay
   apart in 2-D, and the plot shows exactly what was clustered); with ``reducer="pca"`` (the
   fallback), the first 10 principal components: PCA is linear, and 2 components would merge groups
   that differ along a third direction (4 separated groups need 3).
3. **Cluster** the clustering space with DBSCAN (default; the best pipeline of the 99-pipeline
   study) or HDBSCAN, over a small grid, and keep the best-scoring candidate:

   - DBSCAN: ``min_samples`` in (3, 5, 10) x ``eps`` at the 50, 60, 70, 80, 90 and 95 % quantiles
     of the distance from each point to its ``min_samples``-th nearest point (itself counted, as
     DBSCAN counts it): at the q-quantile, a share q of the points are core points. 18 candidates.
   - HDBSCAN: ``min_cluster_size`` in (3, 5, 10, 20, 40) (those <= n / 2), ``min_samples`` = it.

   **Score** = silhouette of the clustered (non-noise) points in the clustering space x the share
   of points clustered, so a candidate that calls most points noise loses what its silhouette
   gains. A candidate is eligible only with at least 2 clusters, at least half the points
   clustered and a silhouette of at least 0.25 (below it, Kaufman and Rousseeuw find "no
   substantial structure"); ties go to the first in grid order. When none is eligible, every image
   goes into one cluster and ``params`` says ``no-structure``. (DBCV, the density-based index,
   would suit density clusters better but has no scikit-learn implementation; silhouette is
   cheap and deterministic, computed on at most 5,000 clustered points.)

Labels: ``0`` is the largest cluster (ties: the one holding the smallest index), and so on;
``-1`` marks noise, points in no dense region, which the step reports as the ``noise`` group.
Fewer than :data:`MIN_IMAGES` images give one cluster (``too-few-images``; no reduction, reducer
``none``, embedding zeros), as HUDD's Step 1b does with fewer than four.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.cluster import DBSCAN, HDBSCAN
from sklearn.metrics import silhouette_score
from sklearn.neighbors import NearestNeighbors

from .clustering import WardClusters, ward_clusters
from .distance import euclidean_distances
from .feature_space import FeatureSpace

__all__ = ["FeatureClustering", "cluster_features", "ward_features", "reduce", "search", "relabel", "umap_available",
           "REDUCERS", "CLUSTERERS", "MIN_IMAGES"]

REDUCERS = ("auto", "umap", "pca")
CLUSTERERS = ("dbscan", "hdbscan")
MIN_IMAGES = 8
_BASE_COMPONENTS = 50
_PCA_COMPONENTS = 10
_UMAP_COMPONENTS = 2
_UMAP_NEIGHBOURS = 15
_MIN_SAMPLES = (3, 5, 10)
_EPS_QUANTILES = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
_MIN_CLUSTER_SIZES = (3, 5, 10, 20, 40)
_MIN_CLUSTERED = 0.5
_MIN_SILHOUETTE = 0.25
_SILHOUETTE_SAMPLE = 5000


@dataclass
class FeatureClustering:
    """What :func:`cluster_features` found.

    ``labels`` ``(n,)`` int64 (``-1`` noise, ``0`` the largest cluster); ``embedding`` ``(n, m)``
    float64, the clustering space; ``reducer`` ``umap``, ``pca`` or ``none``; ``params`` the chosen grid point (with its ``silhouette`` and
    ``score``); ``grid`` one dict per candidate tried, in grid order (density clusterers); ``ward`` the
    Ward cut and WICD curve (Ward); ``space`` the linear map from raw
    features that new images go through to be compared with these (see :func:`reduce`).
    """

    labels: np.ndarray
    embedding: np.ndarray
    reducer: str
    clusterer: str
    params: dict
    grid: list[dict] = field(default_factory=list)
    space: FeatureSpace | None = None
    ward: WardClusters | None = None

    @property
    def n_clusters(self) -> int:
        return int(self.labels.max()) + 1 if len(self.labels) else 0

    @property
    def n_noise(self) -> int:
        return int((self.labels < 0).sum())


def umap_available() -> bool:
    """True when umap-learn is installed (the optional extra ``hudd[umap]``)."""
    return importlib.util.find_spec("umap") is not None


def _check(*, reducer: str = "auto", clusterer: str = "dbscan") -> None:
    """ValueError for an unknown reducer or clusterer, naming the valid ones."""
    if reducer not in REDUCERS:
        raise ValueError(f"reducer == {reducer!r}, must be one of {', '.join(REDUCERS)}")
    if clusterer not in CLUSTERERS:
        raise ValueError(f"clusterer == {clusterer!r}, must be one of {', '.join(CLUSTERERS)}")


def reduce(features: np.ndarray, *, reducer: str = "auto", seed: int = 0, blocks: tuple[int, ...] = ()) -> tuple[np.ndarray, str, FeatureSpace]:
    """The clustering space ``(n, m)`` of ``features``, the reducer used (``umap`` or ``pca``) and its linear part.

    ``auto`` is UMAP when umap-learn is installed, else PCA. The :class:`~hudd.cluster.feature_space.FeatureSpace`
    is the standardisation and PCA fitted here: with PCA it *is* the clustering space; with UMAP it
    is the space UMAP embedded (UMAP's own map is not kept: ``hudd assign`` measures in this one).
    Needs ``n >= 3``; features that are all constant give zeros.

    Raises
    ------
    ValueError
        Unknown ``reducer``, or ``umap`` without umap-learn installed.
    """
    _check(reducer=reducer)
    used = ("umap" if umap_available() else "pca") if reducer == "auto" else reducer
    if used == "umap" and not umap_available():
        raise ValueError("reducer == 'umap' needs umap-learn; install it with pip install 'hudd[umap]', or use pca")
    features = np.asarray(features, dtype=np.float64)
    n, d = features.shape
    space = FeatureSpace.fit(features, n_components=_BASE_COMPONENTS, seed=seed, blocks=blocks)
    if not len(space.components):  # every feature constant: nothing to reduce, and no structure to find
        return np.zeros((n, _UMAP_COMPONENTS if used == "umap" else min(_PCA_COMPONENTS, d))), used, space
    if used == "pca":
        space = space.head(_PCA_COMPONENTS)
        return space.transform(features), used, space
    import umap

    model = umap.UMAP(n_components=_UMAP_COMPONENTS, n_neighbors=min(_UMAP_NEIGHBOURS, n - 1), min_dist=0.0, random_state=seed, n_jobs=1)
    return np.asarray(model.fit_transform(space.transform(features)), dtype=np.float64), used, space


def relabel(labels: np.ndarray) -> np.ndarray:
    """Clusters renumbered by size (``0`` the largest; ties: the one holding the smallest index); ``-1`` stays."""
    labels = np.asarray(labels, dtype=np.int64)
    out = np.full(len(labels), -1, dtype=np.int64)
    clustered = labels >= 0
    if not clustered.any():
        return out
    unique, first, counts = np.unique(labels[clustered], return_index=True, return_counts=True)
    rank = np.empty(len(unique), dtype=np.int64)
    rank[np.lexsort((first, -counts))] = np.arange(len(unique))
    out[clustered] = rank[np.searchsorted(unique, labels[clustered])]
    return out


def _candidates(embedding: np.ndarray, clusterer: str) -> list[dict]:
    """The grid of parameters (see the module docstring), in grid order."""
    n = len(embedding)
    if clusterer == "hdbscan":
        return [{"min_cluster_size": size} for size in _MIN_CLUSTER_SIZES if size <= n // 2]
    grid = []
    for min_samples in (m for m in _MIN_SAMPLES if m < n):
        reach = NearestNeighbors(n_neighbors=min_samples).fit(embedding).kneighbors(embedding)[0][:, -1]
        for q in _EPS_QUANTILES:
            eps = float(np.quantile(reach, q))
            if eps > 0:
                grid.append({"min_samples": min_samples, "eps_quantile": q, "eps": eps})
    return grid


def _fit(embedding: np.ndarray, clusterer: str, params: dict) -> np.ndarray:
    if clusterer == "hdbscan":
        return HDBSCAN(min_cluster_size=params["min_cluster_size"], copy=True).fit_predict(embedding)
    return DBSCAN(eps=params["eps"], min_samples=params["min_samples"]).fit_predict(embedding)


def _score(embedding: np.ndarray, labels: np.ndarray, seed: int) -> tuple[float, float]:
    """``(silhouette, score)`` of one candidate; NaN for both when it is not eligible."""
    clustered = labels >= 0
    k = len(np.unique(labels[clustered]))
    if k < 2 or k >= clustered.sum() or clustered.mean() < _MIN_CLUSTERED:
        return float("nan"), float("nan")
    sample = min(int(clustered.sum()), _SILHOUETTE_SAMPLE)
    silhouette = float(silhouette_score(embedding[clustered], labels[clustered], sample_size=sample, random_state=seed))
    if silhouette < _MIN_SILHOUETTE:
        return silhouette, float("nan")
    return silhouette, silhouette * float(clustered.mean())


def search(embedding: np.ndarray, *, clusterer: str = "dbscan", seed: int = 0) -> tuple[np.ndarray, dict, list[dict]]:
    """Cluster ``embedding`` ``(n, m)`` with every grid point; return the best labels, its params and the grid.

    Labels are as :func:`relabel` gives them. Each grid row holds the parameters, ``n_clusters``,
    ``n_noise``, ``silhouette``, ``score`` (NaN when not eligible) and ``chosen``.

    Raises
    ------
    ValueError
        Unknown ``clusterer``.
    """
    _check(clusterer=clusterer)
    grid, best, best_labels = [], None, None
    for params in _candidates(embedding, clusterer):
        labels = relabel(_fit(embedding, clusterer, params))
        silhouette, score = _score(embedding, labels, seed)
        grid.append({**params, "n_clusters": int(labels.max()) + 1, "n_noise": int((labels < 0).sum()),
                     "silhouette": silhouette, "score": score, "chosen": False})
        if not np.isnan(score) and (best is None or score > grid[best]["score"]):
            best, best_labels = len(grid) - 1, labels
    if best is None:
        return np.zeros(len(embedding), dtype=np.int64), {"fallback": "no-structure"}, grid
    grid[best]["chosen"] = True
    chosen = {key: value for key, value in grid[best].items() if key not in ("n_clusters", "n_noise", "chosen")}
    return best_labels, chosen, grid


def cluster_features(features: np.ndarray, *, reducer: str = "auto", clusterer: str = "dbscan", seed: int = 0,
                     blocks: tuple[int, ...] = ()) -> FeatureClustering:
    """Standardise (blocks weighed equally, :meth:`FeatureSpace.fit`), reduce and cluster ``features`` ``(n, d)`` (see the module docstring)."""
    _check(reducer=reducer, clusterer=clusterer)
    features = np.asarray(features, dtype=np.float64)
    n = len(features)
    if n < MIN_IMAGES:
        return FeatureClustering(np.zeros(n, dtype=np.int64), np.zeros((n, 2)), "none", clusterer, {"fallback": "too-few-images"},
                                  space=FeatureSpace.fit(features, blocks=blocks))
    embedding, used, space = reduce(features, reducer=reducer, seed=seed, blocks=blocks)
    labels, params, grid = search(embedding, clusterer=clusterer, seed=seed)
    return FeatureClustering(labels, embedding, used, clusterer, params, grid, space)


def ward_features(features: np.ndarray, *, k_min: int = 2, k_max: int = 500, k: int | None = None, seed: int = 0,
                  device: torch.device | str = "cpu", blocks: tuple[int, ...] = ()) -> FeatureClustering:
    """Standardise ``features`` ``(n, d)`` (``blocks`` weighed equally, :meth:`FeatureSpace.fit`), then Ward on their
    Euclidean distances, cut at the WICD knee (or at ``k``).

    ``embedding`` holds the first two principal components (for the plot only); ``ward`` the cut
    and its WICD curve; ``params`` k, how it was chosen and its WICD. Deterministic.
    """
    features = np.asarray(features, dtype=np.float64)
    space = FeatureSpace.fit(features, blocks=blocks)
    distances = euclidean_distances(space.transform(features), device=torch.device(device))
    ward = ward_clusters(distances, k_min=k_min, k_max=k_max, k=k)
    embedding = FeatureSpace.fit(features, n_components=2, seed=seed, blocks=blocks).transform(features) if len(features) > 2 else np.zeros((len(features), 2))
    params = {"k": ward.k, "knee": ward.method, "wicd": ward.wicd}
    return FeatureClustering(ward.labels, embedding, "standardise", "ward", params, [], space, ward)
