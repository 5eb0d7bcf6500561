"""The numeric core of HUDD's Step 1b: Ward clustering, the WICD curve, the knee, the cut.

Notation: ``n`` images, ``D`` the ``(n, n)`` Euclidean distance matrix of their normalised
heatmaps, ``Z`` scipy's ``(n - 1, 4)`` linkage matrix. Plain functions over arrays, callable
without the CLI.

WICD (paper, equations 5-6): for ``k`` clusters ``C_1..C_k`` of the ``|C| = n`` images,

    WICD(k) = (1 / k) * sum_j ICD(C_j) * |C_j| / |C|,    ICD(C_j) = mean distance over the pairs of C_j

with ``ICD = 0`` for a singleton. :func:`wicd_curve` gives it for every ``k`` in O(n^2) in total:
in the dendrogram's leaf order every cluster is a contiguous range, so the sum of distances inside
a merged cluster is the two parts' sums plus the block sum of ``D`` between them, and each pair
of images is read exactly once over the whole merge sequence.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from kneed import KneeLocator
from scipy.cluster.hierarchy import leaves_list, linkage
from scipy.spatial.distance import squareform

__all__ = ["ward_linkage", "wicd_curve", "cut", "derivative", "choose_k", "k_range", "ward_clusters", "WardClusters", "cluster_order",
           "why_k"]


def ward_linkage(distances: np.ndarray) -> np.ndarray:
    """Ward linkage ``Z`` of an ``(n, n)`` Euclidean distance matrix (``n >= 2``)."""
    return linkage(squareform(distances, checks=False), method="ward")


def wicd_curve(distances: np.ndarray, Z: np.ndarray) -> np.ndarray:
    """``wicd[k - 1]`` = WICD of the ``k``-cluster cut of ``Z``, for ``k = 1..n`` (see the module docstring).

    Memory: one extra ``(n, n)`` float64 copy of ``distances`` in leaf order.
    """
    n = len(distances)
    if n == 1:
        return np.zeros(1)
    order = leaves_list(Z)
    ordered = np.take(np.take(distances, order, axis=0), order, axis=1)
    start = np.argsort(order).tolist() + [0] * (n - 1)
    size = [1] * n + [0] * (n - 1)
    pair_sum = [0.0] * (2 * n - 1)
    for t, (a, b) in enumerate(Z[:, :2].astype(np.int64).tolist()):
        (a0, na), (b0, nb) = (start[a], size[a]), (start[b], size[b])
        cross = ordered[a0, b0] if na * nb == 1 else ordered[a0:a0 + na, b0:b0 + nb].sum()
        start[n + t], size[n + t] = min(a0, b0), na + nb
        pair_sum[n + t] = pair_sum[a] + pair_sum[b] + float(cross)
    del ordered
    size, pair_sum = np.array(size), np.array(pair_sum)
    # sum over the current clusters of ICD * |C_j| = 2 * pair_sum / (size - 1); singletons add 0
    share = np.zeros(2 * n - 1)
    big = size > 1
    share[big] = 2.0 * pair_sum[big] / (size[big] - 1)
    a, b = Z[:, 0].astype(np.int64), Z[:, 1].astype(np.int64)
    weighted = np.cumsum(share[n:] - share[a] - share[b])
    k = n - 1 - np.arange(n - 1)
    wicd = np.zeros(n)
    wicd[k - 1] = weighted / (n * k)
    return wicd


def cut(Z: np.ndarray, k: int) -> np.ndarray:
    """Cluster labels ``0..k-1`` after the first ``n - k`` merges of ``Z``.

    Label 0 is the largest cluster (ties: the one holding the smallest image index), and so on,
    so ``C1`` is always the biggest root-cause cluster.
    """
    n = len(Z) + 1
    parent = np.arange(2 * n - 1)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for t in range(n - k):
        a, b = int(Z[t, 0]), int(Z[t, 1])
        parent[root(a)] = n + t
        parent[root(b)] = n + t
    roots = np.array([root(i) for i in range(n)])
    unique, first, counts = np.unique(roots, return_index=True, return_counts=True)
    rank = np.lexsort((first, -counts))
    label_of = {unique[r]: label for label, r in enumerate(rank)}
    return np.array([label_of[r] for r in roots], dtype=np.int64)


def derivative(values: np.ndarray) -> np.ndarray:
    """Derivative of a curve sampled at unit steps, by fourth-order central differences.

    ``(-f[i+2] + 8 f[i+1] - 8 f[i-1] + f[i-2]) / 12`` inside; the second and second-to-last points use
    second-order central differences ``(f[i+1] - f[i-1]) / 2`` and the end points one-sided first
    differences, since the five-point stencil does not fit there.
    """
    f = np.asarray(values, dtype=np.float64)
    n = len(f)
    if n < 2:
        return np.zeros(n)
    d = np.empty(n)
    d[0], d[-1] = f[1] - f[0], f[-1] - f[-2]
    if n >= 3:
        d[1:-1] = (f[2:] - f[:-2]) / 2.0
    if n >= 5:
        d[2:-2] = (-f[4:] + 8.0 * f[3:-1] - 8.0 * f[1:-3] + f[:-4]) / 12.0
    return d


def k_range(n: int, k_min: int = 2, k_max: int = 500) -> np.ndarray:
    """The numbers of clusters tried: ``k_min .. min(n // 2, k_max)`` (empty when n < 2 * k_min)."""
    return np.arange(k_min, min(n // 2, k_max) + 1)


def _knee(x: np.ndarray, y: np.ndarray, curve: str, direction: str):
    if len(x) < 3 or np.ptp(y) == 0:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        knee = KneeLocator(x, y, curve=curve, direction=direction).knee
    return int(knee) if knee is not None else None


def choose_k(ks: np.ndarray, wicd: np.ndarray) -> tuple[int, str]:
    """The number of clusters at the knee of the WICD curve, and how it was found.

    Methods, in order: ``derivative-knee`` (the paper: kneedle on the fourth-order derivative of
    WICD, concave and increasing, as the original tool, then one step back: the central slope at
    k spans k-1..k+1, so the first flat slope comes one step after the last large decrease, and
    WICD stops decreasing significantly at the k before it; without the step back, planted blobs
    come out one cluster too many); ``wicd-knee`` (kneedle on WICD itself,
    convex and decreasing) when the derivative has none; ``max-curvature`` (largest second
    difference of WICD); ``single-k`` when only one k is in range; ``flat`` (smallest k) when WICD
    does not change with k (e.g. identical heatmaps).
    """
    ks = np.asarray(ks)
    wicd = np.asarray(wicd, dtype=np.float64)
    if len(ks) == 1:
        return int(ks[0]), "single-k"
    if np.ptp(wicd) == 0:
        return int(ks[0]), "flat"
    knee = _knee(ks, derivative(wicd), "concave", "increasing") if len(ks) >= 5 else None
    if knee is not None:
        return max(int(ks[0]), knee - 1), "derivative-knee"
    knee = _knee(ks, wicd, "convex", "decreasing")
    if knee is not None:
        return knee, "wicd-knee"
    if len(ks) >= 3:
        return int(ks[1 + int(np.argmax(np.diff(wicd, 2)))]), "max-curvature"
    return int(ks[0]), "smallest-k"


_K_REASONS = {
    "derivative-knee": "the knee of the WICD curve's fourth-order derivative (kneedle), as the paper",
    "wicd-knee": "the knee of the WICD curve itself (its derivative has none)",
    "max-curvature": "the largest second difference of the WICD curve (kneedle found no knee)",
    "single-k": "the only k in range",
    "flat": "the smallest k (WICD does not change with k)",
    "smallest-k": "the smallest k (too few k to find a knee)",
    "fixed": "fixed by the method",
    "too-few-images": "one cluster: fewer than 2 k_min images",
    "single-image": "one cluster: a single image",
}


def why_k(k: int, method: str) -> str:
    """Why a Ward clustering has ``k`` clusters, in words, from the ``method`` that chose it (:func:`choose_k`)."""
    return f"k = {k}: {_K_REASONS.get(method, method)}"


@dataclass
class WardClusters:
    """Labels ``(n,)`` ``0..k-1``, ``k``, how it was chosen, ``curve[k - 1]`` = WICD of the ``k``-cut and the ``ks`` tried."""

    labels: np.ndarray
    k: int
    method: str
    curve: np.ndarray
    ks: np.ndarray

    @property
    def wicd(self) -> float:
        return float(self.curve[self.k - 1])


def ward_clusters(distances: np.ndarray, *, k_min: int = 2, k_max: int = 500, k: int | None = None) -> WardClusters:
    """Ward on an ``(n, n)`` Euclidean distance matrix, cut at the knee of WICD over ``k_min .. min(n // 2, k_max)``.

    ``k`` given: cut there instead (capped at ``n``; method ``fixed``). Fewer than ``2 k_min``
    images: one cluster (``too-few-images``; ``single-image`` for ``n < 2``). Shared by HUDD's
    per-layer heatmap clustering and the feature-based methods.
    """
    n = len(distances)
    ks = k_range(n, k_min, k_max)
    if n < 2:
        return WardClusters(np.zeros(n, np.int64), 1, "single-image", np.zeros(max(n, 1)), ks)
    Z = ward_linkage(distances)
    curve = wicd_curve(distances, Z)
    if k is not None:
        k, method = min(k, n), "fixed"
    elif len(ks):
        k, method = choose_k(ks, curve[ks - 1])
    else:
        k, method = 1, "too-few-images"
    return WardClusters(cut(Z, k), k, method, curve, ks)


def cluster_order(name: str) -> tuple:
    """Sort key of cluster ids: by face element (``upper_lid-C3``), then C2 before C10, a density-based
    clustering's ``noise`` group last."""
    prefix, _, number = str(name).rpartition("C")
    return (prefix.removesuffix("-"), 0, int(number), "") if number.isdigit() else (str(name), 1, 0, str(name))
