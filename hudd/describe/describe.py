"""Say in words what a cluster's images have in common: conditions on a feature table (simulator
parameters, image properties, the class confusion) that separate the cluster from the rest of the
test set.

A condition is a threshold (``x <= t``, ``x > t``), a range (``a < x <= b``), the outside of a
range (so a range of angles that wraps around 360 degrees is found too) or a category
(``x = v``). A condition counts when most of the cluster meets it (``in_cluster >= 0.5``) and it
is at least :data:`MIN_LIFT` times as common in the cluster as in the rest (``lift``). Per cluster
and feature, the condition that counts with the largest Youden index (share of the cluster
meeting it minus share of the rest meeting it) over a grid of quantiles wins. The up to
:data:`MAX_CONDITIONS` best describe the cluster; features that separate the cluster equally
well are ranked by how far the cluster's median lies from the rest's, in interquartile ranges of
the rest (several properties can follow one cause, e.g. speckle noise also raises sharpness and
contrast: the one the cause moves most comes first). This is a one-level rule learner: each
condition reads on its own, as an engineer would check it against an image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["Condition", "best_condition", "describe_clusters", "sentence", "MIN_LIFT", "MIN_IN_CLUSTER", "MAX_CONDITIONS",
           "DESCRIPTION_COLUMNS"]

MIN_LIFT = 2.0
MIN_IN_CLUSTER = 0.5
MAX_CONDITIONS = 3
SENTENCE_CONDITIONS = 2
GRID = 20
DESCRIPTION_COLUMNS = ["cluster", "source", "feature", "condition", "in_cluster", "in_rest", "lift"]


@dataclass(frozen=True)
class Condition:
    """One condition on one feature and how it separates a cluster from the rest."""

    feature: str
    condition: str
    in_cluster: float
    in_rest: float
    effect: float = 0.0  # |cluster median - rest median| / rest's interquartile range (numeric features)

    @property
    def lift(self) -> float:
        return self.in_cluster / self.in_rest if self.in_rest > 0 else float("inf")

    @property
    def score(self) -> float:
        return self.in_cluster - self.in_rest

    @property
    def counts(self) -> bool:
        return counts(self.in_cluster, self.in_rest)


def counts(in_cluster, in_rest):
    """Whether conditions met by shares ``in_cluster`` and ``in_rest`` count (arrays element-wise)."""
    return (in_cluster >= MIN_IN_CLUSTER) & (in_cluster >= MIN_LIFT * in_rest)


def _best(scores: np.ndarray, counting: np.ndarray) -> tuple[int, ...]:
    """Index of the largest score among the conditions that count (of all, when none does)."""
    return np.unravel_index(int(np.argmax(np.where(counting, scores, -np.inf) if counting.any() else scores)), scores.shape)


def _effect(values: np.ndarray, member: np.ndarray) -> float:
    rest = values[~member]
    spread = np.subtract(*np.percentile(rest, [75, 25]))
    distance = abs(np.median(values[member]) - np.median(rest))
    return float(distance / spread) if spread > 0 else float("inf") if distance > 0 else 0.0


def _fmt(value: float) -> str:
    return f"{value:.3g}"


def _numeric(feature: str, values: np.ndarray, member: np.ndarray) -> Condition | None:
    """The best threshold, range or outside-of-range on a numeric feature (NaN values ignored)."""
    known = np.isfinite(values)
    values, member = values[known], member[known]
    n_in, n_out = int(member.sum()), int((~member).sum())
    if n_in == 0 or n_out == 0:
        return None
    edges = np.unique(np.quantile(values, np.linspace(0, 1, GRID + 1)))
    if len(edges) < 2:
        return None
    cut = np.concatenate([[-np.inf], edges[:-1], [np.inf]])  # intervals (cut[i], cut[j]]
    below_in = np.searchsorted(np.sort(values[member]), cut, side="right") / n_in
    below_out = np.searchsorted(np.sort(values[~member]), cut, side="right") / n_out
    inside_in = below_in[None, :] - below_in[:, None]  # [i, j]: share in (cut[i], cut[j]]
    inside_out = below_out[None, :] - below_out[:, None]
    valid = np.triu(np.ones_like(inside_in, dtype=bool), k=1)
    valid[0, -1] = False  # everything
    scores = np.stack([np.where(valid, inside_in - inside_out, -np.inf),  # inside
                       np.where(valid & (np.arange(len(cut))[:, None] > 0) & (np.arange(len(cut))[None, :] < len(cut) - 1),
                                inside_out - inside_in, -np.inf)])  # outside (a proper range only)
    counting = np.stack([counts(inside_in, inside_out), counts(1 - inside_in, 1 - inside_out)])
    outside, i, j = _best(scores, counting)
    lo, hi = cut[i], cut[j]
    effect = _effect(values, member)
    if outside:
        text = f"{feature} <= {_fmt(lo)} or > {_fmt(hi)}"
        return Condition(feature, text, 1 - float(inside_in[i, j]), 1 - float(inside_out[i, j]), effect)
    if np.isinf(lo):
        text = f"{feature} <= {_fmt(hi)}"
    elif np.isinf(hi):
        text = f"{feature} > {_fmt(lo)}"
    else:
        text = f"{_fmt(lo)} < {feature} <= {_fmt(hi)}"
    return Condition(feature, text, float(inside_in[i, j]), float(inside_out[i, j]), effect)


def _categorical(feature: str, values: pd.Series, member: np.ndarray) -> Condition | None:
    """The category most over-represented in the cluster (by Youden index)."""
    if member.all() or not member.any():
        return None
    share_in = values[member].value_counts(normalize=True)
    share_out = values[~member].value_counts(normalize=True).reindex(share_in.index, fill_value=0.0)
    best = share_in.index[_best((share_in - share_out).to_numpy(), counts(share_in, share_out).to_numpy())[0]]
    return Condition(feature, f"{feature} = {best}", float(share_in[best]), float(share_out[best]))


def best_condition(feature: str, values: pd.Series, member: np.ndarray) -> Condition | None:
    """The best condition on one feature column for the cluster marked by ``member`` (bool per row)."""
    if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
        return _categorical(feature, values.astype(str), member)
    return _numeric(feature, values.to_numpy(np.float64), member)


def describe_clusters(clusters: pd.DataFrame, table: pd.DataFrame, source: str) -> pd.DataFrame:
    """Rows of :data:`DESCRIPTION_COLUMNS` for every cluster of ``clusters`` (image, cluster).

    ``table`` is indexed by image and holds one column per feature for every test image (the
    cluster members and the rest); only conditions that count are kept, best first.
    """
    rows = []
    images = table.index.to_numpy()
    for name, group in clusters.groupby("cluster", sort=False):
        member = np.isin(images, group["image"].to_numpy())
        found = [best_condition(feature, table[feature], member) for feature in table.columns]
        kept = sorted((c for c in found if c is not None and c.counts), key=lambda c: (-round(c.score, 9), -c.effect))[:MAX_CONDITIONS]
        rows += [{"cluster": name, "source": source, "feature": c.feature, "condition": c.condition,
                  "in_cluster": round(c.in_cluster, 4), "in_rest": round(c.in_rest, 4), "lift": round(c.lift, 2)} for c in kept]
    return pd.DataFrame(rows, columns=DESCRIPTION_COLUMNS).astype({"in_cluster": float, "in_rest": float, "lift": float})


def sentence(cluster: str, size: int, descriptions: pd.DataFrame) -> str:
    """``C3 (30 images): brightness <= 0.18 in 93% of them vs 6% of the rest; mostly BottomLeft -> MiddleLeft (80%)``:
    the best two conditions of any source, then the class confusion."""
    rows = descriptions[descriptions["cluster"] == cluster]
    conditions = rows[rows["source"] != "classes"]
    best = conditions.assign(score=conditions["in_cluster"] - conditions["in_rest"]).nlargest(SENTENCE_CONDITIONS, "score")
    parts = [f"{r.condition} in {r.in_cluster:.0%} of them vs {r.in_rest:.0%} of the rest" for r in best.itertuples()]
    confusion = rows[rows["source"] == "classes"]
    if len(confusion):
        parts.append(f"mostly {confusion['condition'].iloc[0].split(' = ', 1)[1]} ({confusion['in_cluster'].iloc[0]:.0%})")
    what = "; ".join(parts) if parts else "no simple condition sets them apart; look at the images"
    return f"{cluster} ({size} images): {what}"
