"""Step 2b, ``hudd describe``: say in words what each root-cause cluster's images have in common.

For the clusters of the workspace's active method, conditions (:mod:`hudd.describe.describe`) from three
sources, each against the rest of the test set:

- ``params``: the simulator's parameters in ``DataSets/TestSet/params.csv``, when it exists
  (never its ``cause`` or label columns);
- ``image``: interpretable properties of the pixels (:mod:`hudd.describe.image_properties`), for any data;
- ``classes``: the label -> prediction pair (classification) or the worst keypoint.

Outputs: ``Properties/TestSet.csv`` (the properties of every test image), ``descriptions.csv``
(cluster, source, feature, condition, in_cluster, in_rest, lift) and ``findings.csv`` (cluster,
images, sentence; largest cluster first).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ..case.data import read_params
from ..describe.describe import DESCRIPTION_COLUMNS, describe_clusters, sentence
from ..core.errors import HuddError
from ..evaluate.evaluation import NOISE, parameter_columns
from ..core.files import file_hash, write_csv
from ..describe.image_properties import properties_table
from ..core.progress import note
from ..workspace.readers import read_table, redo
from .common import Context, run_step

__all__ = ["DescribeOutcome", "run", "VERSION"]

VERSION = 2


@dataclass
class DescribeOutcome:
    """``descriptions.csv`` and ``findings.csv`` as tables."""

    ran: bool
    descriptions: pd.DataFrame
    findings: pd.DataFrame


def _confusion(ctx: Context, results: pd.DataFrame) -> pd.DataFrame:
    """Per test image its label -> prediction pair, or its worst keypoint (one categorical column)."""
    if ctx.model.spec.task == "keypoints":
        names = [ctx.model.spec.keypoints[int(k)] for k in results["worst_keypoint"]]
        return pd.DataFrame({"worst keypoint": names}, index=results["image"].to_numpy())
    pairs = results["label"].astype(str) + " -> " + results["prediction"].astype(str)
    return pd.DataFrame({"confusion": pairs.to_numpy()}, index=results["image"].to_numpy())


def run(ctx: Context, *, force: bool = False) -> DescribeOutcome:
    """Run (or skip, when current) the descriptions of the active method's clusters; see the module docstring."""
    ws = ctx.workspace
    method = ws.active_method()["name"]
    path = ws.method_clusters_csv(method)
    if not path.is_file():
        raise HuddError(f"{path}: no root-cause clusters yet; run `hudd analyze {ctx.case.root}` first")
    fix = redo(f"cluster --method {method}")
    clusters = read_table(path, {"image": "str", "cluster": "str"}, fix=fix)
    clusters = clusters[clusters["cluster"] != NOISE]
    results = read_table(ws.test_result, {"image": "str", "correct": "bool"}, fix=redo("test"))
    images = results["image"].tolist()
    unknown = sorted(set(clusters["image"]) - set(images))
    if unknown:
        raise HuddError(f"{path}: lists {unknown[0]}, which {ws.test_result.name} does not; {fix}")
    params_path = ctx.case.split_dir("TestSet") / "params.csv"
    inputs = {"clusters": file_hash(path), "testResult": file_hash(ws.test_result),
              "TestSet": ctx.listing_hash(ctx.listing("TestSet")), "params": file_hash(params_path) if params_path.is_file() else None}

    def compute(fingerprint: str, resume: bool):
        properties = properties_table(ctx.case, images)
        write_csv(ws.properties_csv("TestSet"), properties.reset_index())
        tables = {"image": properties.add_prefix("image "), "classes": _confusion(ctx, results)}
        params = read_params(ctx.case, "TestSet")
        missing = sorted(set(images) - set(params["image"])) if params is not None else []
        if missing:
            note(f"describe: {params_path} has no row for {len(missing)} test images (first: {missing[0]}); "
                 f"the clusters are described from their pixels and classes only")
        elif params is not None:
            tables = {"params": params.drop_duplicates("image").set_index("image").loc[images, parameter_columns(params)], **tables}
        descriptions = pd.concat([describe_clusters(clusters, table, source) for source, table in tables.items()], ignore_index=True)
        write_csv(ws.descriptions_csv, descriptions[DESCRIPTION_COLUMNS])
        sizes = clusters["cluster"].value_counts(sort=True)
        findings = pd.DataFrame({"cluster": sizes.index, "images": sizes.to_numpy(),
                                 "sentence": [sentence(name, int(size), descriptions) for name, size in sizes.items()]})
        write_csv(ws.findings_csv, findings)
        return [ws.properties_csv("TestSet"), ws.descriptions_csv, ws.findings_csv]

    ran = run_step(ctx, "describe", VERSION, config={"method": method}, inputs=inputs, compute=compute, force=force)
    return DescribeOutcome(ran, read_table(ws.descriptions_csv, DESCRIPTION_COLUMNS, fix=redo("describe"), allow_empty=True,
                                           keep_default_na=False),
                           read_table(ws.findings_csv, {"cluster": "str", "images": "int", "sentence": "str"}, fix=redo("describe")))
