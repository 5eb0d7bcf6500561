"""Effect sizes and tests for comparing retraining methods over repeated runs (paper, RQ2)."""

from __future__ import annotations

import numpy as np
from scipy.stats import mannwhitneyu

__all__ = ["a12", "mann_whitney_p"]


def a12(x, y) -> float:
    """Vargha-Delaney A12: the probability that a run of ``x`` beats a run of ``y`` (ties count half).

    0.5 means no difference; >= 0.64 is a medium effect, >= 0.71 a large one.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if not len(x) or not len(y):
        return float("nan")
    greater = (x[:, None] > y[None, :]).sum()
    equal = (x[:, None] == y[None, :]).sum()
    return float((greater + 0.5 * equal) / (len(x) * len(y)))


def mann_whitney_p(x, y) -> float:
    """Two-sided Mann-Whitney U p-value (NaN when a sample is empty or all values are equal)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if not len(x) or not len(y) or np.ptp(np.concatenate([x, y])) == 0:
        return float("nan")
    return float(mannwhitneyu(x, y, alternative="two-sided").pvalue)
