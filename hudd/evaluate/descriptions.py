"""Score the words against the truth: does the description of each cause's cluster name what the cause changed?

For a simulated case, every injected cause that dominates a cluster (as in coverage: at least
:data:`~hudd.evaluate.evaluation.MIN_COVERING_SIZE` images, purity at least
:data:`~hudd.evaluate.evaluation.MIN_COVERING_PURITY`) is checked against the evidence its simulator
family publishes (:func:`hudd.sim.params.evidence`): the cluster's description from ``params.csv``
should hold a condition on the parameter the cause changed, and its description from the pixels a
condition on the image property it changed, each in the right direction (the cluster's median
below the rest's for ``low``, above for ``high``, farther from the test set's median for
``outside``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..describe.describe import describe_clusters
from .evaluation import MIN_COVERING_PURITY, MIN_COVERING_SIZE, NOISE, evaluate_clusters, parameter_columns

__all__ = ["score_descriptions", "in_direction"]

IMAGE_PREFIX = "image "


def in_direction(values: pd.Series, member: np.ndarray, direction: str) -> bool:
    """Whether the cluster marked by ``member`` lies the way ``direction`` says from the rest (NaN ignored)."""
    values = values.to_numpy(np.float64)
    inside, rest = values[member], values[~member]
    inside, rest = inside[~np.isnan(inside)], rest[~np.isnan(rest)]
    if direction == "any":
        return True
    if not len(inside) or not len(rest):
        return False
    if direction == "outside":
        centre = np.median(np.concatenate([inside, rest]))
        return bool(np.median(np.abs(inside - centre)) > np.median(np.abs(rest - centre)))
    below = np.median(inside) < np.median(rest)
    return bool(below if direction == "low" else not below)


def _named(descriptions: pd.DataFrame, cluster: str, feature: str, table: pd.DataFrame, member: np.ndarray, direction: str) -> bool:
    said = ((descriptions["cluster"] == cluster) & (descriptions["feature"] == feature)).any()
    return bool(said and in_direction(table[feature], member, direction))


def score_descriptions(clusters: pd.DataFrame, params: pd.DataFrame, properties: pd.DataFrame | None, evidence: dict,
                       descriptions: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (cause, cluster it dominates): cause, cluster, size, purity, parameter, parameter_named,
    property and property_named (NaN when the cause changes no pixel property or it was not measured).

    ``clusters``: image, cluster; ``params``: the test set's params.csv (image ids as in ``clusters``);
    ``properties``: image properties indexed by image (as :func:`hudd.describe.image_properties.properties_table`);
    ``descriptions``: what ``hudd describe`` wrote for these clusters (None: described here, as it describes).
    """
    clusters = clusters[clusters["cluster"] != NOISE]
    by_image = params.drop_duplicates("image").set_index("image")
    tables = {"params": by_image[parameter_columns(params)]}
    if properties is not None:
        tables["image"] = properties.reindex(by_image.index).add_prefix(IMAGE_PREFIX)
    if descriptions is None:
        descriptions = pd.concat([describe_clusters(clusters, table, source) for source, table in tables.items()], ignore_index=True)
    table = evaluate_clusters(clusters, params).table
    rows = []
    for row in table.itertuples():
        if row.cluster == NOISE or row.size < MIN_COVERING_SIZE or row.purity < MIN_COVERING_PURITY or row.dominant_cause not in evidence:
            continue
        member = by_image.index.isin(clusters.loc[clusters["cluster"] == row.cluster, "image"])
        cause = evidence[row.dominant_cause]
        result = {"cause": row.dominant_cause, "cluster": row.cluster, "size": int(row.size), "purity": float(row.purity),
                  "parameter": cause.parameter, "parameter_named": cause.parameter in tables["params"]
                  and _named(descriptions, row.cluster, cause.parameter, tables["params"], member, cause.direction),
                  "property": cause.property, "property_named": float("nan")}
        image = tables.get("image")
        if cause.property is not None and image is not None and IMAGE_PREFIX + cause.property in image:
            result["property_named"] = _named(descriptions, row.cluster, IMAGE_PREFIX + cause.property, image, member,
                                              cause.property_direction)
        rows.append(result)
    columns = ["cause", "cluster", "size", "purity", "parameter", "parameter_named", "property", "property_named"]
    return pd.DataFrame(rows, columns=columns)
