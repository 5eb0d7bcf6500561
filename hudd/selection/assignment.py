"""The numeric core of HUDD's Step 4: quotas, single linkage, and the ranked assignment of Fig. 10.

Notation: ``M`` improvement images, ``K`` root-cause clusters, ``L`` the ``(M, K)`` matrix of
single-linkage distances (the distance from an improvement image to the closest error-inducing
test image of each cluster, on the raw heatmaps of the selected layer, as the paper).
"""

from __future__ import annotations

import numpy as np

__all__ = ["quotas", "single_linkage", "ranked_assignment"]


def quotas(cluster_sizes: np.ndarray, *, n_test: int, accuracy: float, sf: float, budget: int | None = None) -> np.ndarray:
    """Images to select per cluster, ``U_Ci`` (paper, equation 7).

    ``U_Ci = (n_test * sf) * (1 - accuracy) * |C_i| / |C|``, rounded half up per cluster (the
    original tool took ``ceil(sf * |C_i|)``, which is the same formula when every test error is
    clustered, rounded up). With ``budget``, exactly ``budget`` images are split in the same
    proportions by largest remainders (ties: the earlier cluster).
    """
    sizes = np.asarray(cluster_sizes, dtype=np.float64)
    share = sizes / sizes.sum()
    if budget is None:
        return np.floor(n_test * sf * (1.0 - accuracy) * share + 0.5 + 1e-9).astype(np.int64)  # 1e-9: 2.4999999 from float rounding is 2.5
    exact = budget * share
    base = np.floor(exact).astype(np.int64)
    remainder = budget - int(base.sum())
    order = np.lexsort((np.arange(len(sizes)), -(exact - base)))
    base[order[:remainder]] += 1
    return base


def single_linkage(distances: np.ndarray, cluster_starts: np.ndarray) -> np.ndarray:
    """Per-cluster minimum of ``(b, n)`` distances whose columns are sorted by cluster.

    ``cluster_starts`` are the first column of each cluster (increasing, starting at 0); returns ``(b, K)``.
    """
    return np.minimum.reduceat(distances, cluster_starts, axis=1)


def ranked_assignment(linkage: np.ndarray, quota: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fig. 10: assign improvement images to clusters, closest first, within the quotas.

    For rank ``r = 1..K``: every image not yet assigned is offered to its ``r``-th closest cluster,
    images in increasing order of that distance (ties: lower image index first); a cluster takes
    it while it has room. So a full cluster (e.g. a spurious one that attracted everything) passes
    its candidates on to their next cluster. An image is assigned at most once.

    Returns
    -------
    cluster : ndarray of int64, shape (M,)
        Assigned cluster index, or -1.
    rank : ndarray of int64, shape (M,)
        1-based rank of that cluster for the image, or 0.
    distance : ndarray of float64, shape (M,)
        Single-linkage distance to that cluster, or NaN.
    """
    linkage = np.asarray(linkage, dtype=np.float64)
    m, k = linkage.shape
    ranked = np.argsort(linkage, axis=1, kind="stable")
    room = np.asarray(quota, dtype=np.int64).copy()
    cluster = np.full(m, -1, dtype=np.int64)
    rank = np.zeros(m, dtype=np.int64)
    for r in range(k):
        if not (room > 0).any():
            break
        candidates = np.flatnonzero(cluster < 0)
        choice = ranked[candidates, r]
        dist = linkage[candidates, choice]
        order = np.lexsort((candidates, dist))
        for c in np.unique(choice):
            if room[c] <= 0:
                continue
            members = order[choice[order] == c][: room[c]]
            cluster[candidates[members]] = c
            rank[candidates[members]] = r + 1
            room[c] -= len(members)
    distance = np.full(m, np.nan)
    taken = cluster >= 0
    distance[taken] = linkage[np.flatnonzero(taken), cluster[taken]]
    return cluster, rank, distance
