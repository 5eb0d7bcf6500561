"""Step 4, ``hudd assign``: pick the improvement-set images that resemble each root-cause cluster.

For every ImprovementSet image (labels unknown, so relevance explains the predicted class), the
raw heatmap of the selected layer (not normalised, as the paper) is computed batch by batch and
compared by blocked GEMM (:mod:`hudd.cluster.distance`) with the clustered error-inducing test heatmaps;
only its single-linkage distance to each cluster is kept (``UnsafeSet/single_linkage.npy``,
``(M, K)``). Quotas follow the paper's equation 7 (or split ``--budget``), and the ranked
assignment of Fig. 10 fills them (:mod:`hudd.selection.assignment`).

``--method`` other than ``paper`` assigns to a feature method's clusters
(``ClusterAnalysis/<method>/``) where config ``select_in`` says (default: where the method's
registry entry, :data:`hudd.methods.REGISTRY`, says): ``features``, the space they were made in
(the improvement images' features from the same extractor, through the method's ``space.npz``), or
``heatmaps``, the raw heatmaps of the layer the paper's clustering selected (where the model
processes its errors most alike), compared with the clustered images' heatmaps; single linkage to
each cluster's members either way. The ``noise`` group of a density clustering gets no quota.

Outputs: ``UnsafeSet/C<i>/`` (the selected images, hard links), ``UnsafeSet/unsafe.csv`` (image,
cluster, rank, distance, prediction, label when known), ``UnsafeSet/quotas.csv`` (cluster, size,
quota, selected) and ``UnsafeSet/labels.csv``, the sheet an
engineer fills in (image, cluster, then the class, or ``<keypoint>_x, <keypoint>_y`` for keypoint
models), pre-filled when the improvement set is labelled. Labels typed into an earlier
``labels.csv`` are kept when assign reruns: they are appended to ``labels-history.csv`` first
(:mod:`hudd.case.labels`), and the latest typed label of each image wins over a pre-filled one.

Keypoint models: each face element (keypoint group) has its own clusters and selected layer. An
improvement image's relevance for a face element explains the element's keypoint whose predicted
map peak is lowest (the worst keypoint needs labels). Face elements are assigned one after the
other, largest total quota first, since their distances live in different layers; an image goes
to at most one cluster.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..selection.assignment import quotas, ranked_assignment, single_linkage
from ..cluster.clustering import cluster_order
from ..case.data import ImageDataset, make_loader
from ..cluster.distance import distance_blocks
from ..core.errors import HuddError
from ..export.clusters import link_images
from ..case.labels import record_typed_labels, typed_labels
from ..explain.lrp import Explainer
from ..models import decode_keypoints
from ..evaluate.evaluation import NOISE
from ..explain.features import block_batches
from ..methods import FEATURES, HEATMAPS, PAPER, REGISTRY, resolve
from ..models.predictions import check_finite, predict_batches
from ..core.progress import progress
from ..workspace.readers import check_images, load_array, read_table, redo
from ..workspace.tables import read_index, read_layers, read_unsafe
from ..workspace.workspace import Workspace
from ..core.rows import drop as drop_rows
from ..core.files import save_npy, write_csv
from .common import Context, listing_rows, method_extractors, method_space, run_step, sharded

__all__ = ["AssignOutcome", "run", "selection_space", "VERSION"]

VERSION = 4  # 2: quotas.csv; 3: the clusters of any method (config "method"); 4: config "select_in"


@dataclass
class AssignOutcome:
    """The unsafe set (``unsafe.csv``) and the quota, size and selection of each cluster."""

    ran: bool
    unsafe: pd.DataFrame
    clusters: pd.DataFrame


def selection_space(ctx: Context, method: str) -> str:
    """``heatmaps`` or ``features``: where improvement images are compared with ``method``'s clusters.

    Config ``select_in`` (``auto``: the method's own, :attr:`hudd.methods.Method.select_in`). The paper's
    clusters live in heatmaps only; keypoint models' feature clusters are compared in features
    (their heatmaps are made per face element).
    """
    if method == PAPER:
        return HEATMAPS
    if ctx.model.spec.task != "classification":
        return FEATURES
    return REGISTRY[method].select_in if ctx.config.select_in == "auto" else ctx.config.select_in


def _in_heatmap_layer(ctx: Context, clusters: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """A feature method's clusters with the layer the paper selected (where the model's heatmaps separate its
    errors best), to compare improvement images in that layer's heatmaps; and the paper clustering's fingerprint."""
    ws = ctx.workspace
    path = ws.method_clusters_csv(PAPER)
    entry = ws.step_entry("cluster")
    if not entry or not entry.get("done") or not path.is_file():
        raise HuddError(f"{path}: selecting in heatmaps needs the model's heatmaps and the paper's clusters; run "
                        f"`hudd analyze {ctx.case.root}` first, or set select_in = \"features\" in {ctx.case.root / 'hudd.toml'}")
    layers = read_table(path, {"image": "str", "cluster": "str", "layer": "str"}, fix=redo("cluster"))["layer"].unique()
    clusters = clusters.assign(layer=layers[0])
    _check_against_heatmaps(ws, path, clusters, redo("analyze"), exact=False)
    return clusters, entry["fingerprint"]


def _clusters(ctx: Context, method: str) -> pd.DataFrame:
    """The clusters to assign to: HUDD's selected ones (``paper``) or a feature method's, without ``noise``."""
    ws = ctx.workspace
    step, path = ("cluster" if method == PAPER else method), ws.method_clusters_csv(method)
    entry = ws.step_entry(step)
    if not entry or not entry.get("done") or not path.is_file():
        run = f"hudd analyze {ctx.case.root}" if method == PAPER else f"hudd cluster {ctx.case.root} --method {method}"
        raise HuddError(f"{path}: no root-cause clusters yet; run `{run}` first")
    columns = {"image": "str", "cluster": "str"} | ({"layer": "str"} if method == PAPER else {})
    fix = redo("cluster" if method == PAPER else f"cluster --method {method}")
    clusters = read_table(path, columns, fix=fix)
    check_images(path, clusters["image"], ctx.case.datasets, fix)
    if method == PAPER:
        _check_against_heatmaps(ws, path, clusters, fix)
    clusters = clusters[clusters["cluster"] != NOISE].reset_index(drop=True)
    if clusters.empty:
        raise HuddError(f"{path}: every error-inducing image is {NOISE}, no cluster to assign to; "
                        f"try another --method or --clusterer in `hudd cluster`")
    return clusters


def _check_against_heatmaps(ws: Workspace, path, clusters: pd.DataFrame, fix: str, exact: bool = True) -> None:
    """The clusters hold the images of ``Heatmaps/images.csv`` (``exact``: all of them), in layers that have heatmaps."""
    images, explained = set(clusters["image"]), set(read_index(ws)["image"])
    if images != explained if exact else not images <= explained:
        raise HuddError(f"{path}: its images differ from those of {ws.heatmap_index}; {fix}")
    unknown = sorted(set(clusters["layer"]) - set(read_layers(ws)["layer"]))
    if unknown:
        raise HuddError(f"{path}: names layer {unknown[0]!r}, which has no heatmaps in {ws.heatmaps_dir}; {fix}")


def _face_element(cluster: str) -> str:
    """``upper_lid-C3`` -> ``upper_lid``; ``C3`` -> ``""`` (classification: one group)."""
    return cluster.rsplit("-C", 1)[0] if "-C" in cluster else ""


def _weakest_keypoint(maps: torch.Tensor, members: list[int]) -> torch.Tensor:
    """Per image, the keypoint of ``members`` whose map peak is lowest: the one the model is least sure
    of, standing in for the worst keypoint, which needs labels."""
    peaks = maps[:, members].flatten(2).amax(dim=2)
    return torch.as_tensor(members, device=maps.device)[peaks.argmin(dim=1)]


def _label_columns(ctx: Context, listing) -> pd.DataFrame:
    """The label columns of labels.csv: the class, or ``<keypoint>_x, <keypoint>_y`` (blank when unknown)."""
    spec = ctx.model.spec
    if spec.task == "classification":
        return pd.DataFrame({"label": np.array(spec.classes, dtype=object)[listing.targets] if listing.labelled else [""] * len(listing)})
    coords = listing.targets.reshape(len(listing), -1)
    return pd.DataFrame(coords, columns=[f"{name}_{axis}" for name in spec.keypoints for axis in ("x", "y")])


def _keep_typed_labels(ctx: Context, labels: pd.DataFrame) -> pd.DataFrame:
    """Labels typed in earlier (the labels history) win over blanks and pre-filled ones, so labels typed
    in or corrected by an engineer survive any sequence of reruns for the images selected again."""
    typed = typed_labels(ctx.workspace)
    labels = labels.copy()
    for column in labels.columns.drop(["image", "cluster"]):
        if column not in typed.columns:
            continue
        earlier = labels["image"].map(typed[column]).fillna("").astype(str).str.strip()
        labels[column] = labels[column].astype(object).where(earlier == "", earlier)
    return labels


def _prefilled(ws: Workspace) -> pd.DataFrame | None:
    """What the last assign pre-filled into ``labels.csv`` (its ``unsafe.csv``, by image); None when unreadable."""
    try:
        return read_unsafe(ws).drop_duplicates("image").set_index("image")
    except HuddError:
        return None


def _sorted_by_cluster(cluster_of_row: np.ndarray, columns) -> tuple[np.ndarray, np.ndarray]:
    """The row order that groups rows by cluster (stable), and where each of ``columns``' clusters starts in it."""
    order = np.argsort(cluster_of_row, kind="stable")
    return order, np.searchsorted(cluster_of_row[order], columns)


def _heatmap_linkage(ctx: Context, clusters: pd.DataFrame, names: list[str], dataset: ImageDataset):
    """Batch by batch, the ``(b, K)`` single-linkage distances of the improvement images' raw heatmaps to HUDD's
    clusters and the predictions (class index, or ``(b, K, 2)`` keypoints); one LRP pass per batch and face element."""
    ws = ctx.workspace
    spec = ctx.model.spec
    index = read_index(ws)
    label_of = dict(zip(clusters["image"], clusters["cluster"]))
    layer_of = dict(zip(clusters["cluster"], clusters["layer"]))
    groups = []  # (layer, cluster columns, reference heatmaps sorted by cluster, cluster starts, explainer, keypoints)
    for element in dict.fromkeys(_face_element(name) for name in names):
        columns = [i for i, name in enumerate(names) if _face_element(name) == element]
        layer = layer_of[names[columns[0]]]
        rows = np.array([i for i, image in enumerate(index["image"]) if image in label_of and _face_element(label_of[image]) == element])
        order, starts = _sorted_by_cluster(np.array([names.index(label_of[index["image"][r]]) for r in rows]), columns)
        heatmaps = load_array(ws.heatmap(layer), ndim=3, rows=len(index), mmap=True, fix=redo("heatmaps"))
        reference = np.asarray(heatmaps[rows[order]], dtype=np.float64).reshape(len(rows), -1)
        explainer = Explainer(ctx.model.module, composite=ctx.config.lrp_rule, layers=[layer], device=ctx.device, precision=ctx.precision)
        members = spec.keypoint_groups.get(element, list(range(len(spec.keypoints)))) if spec.task == "keypoints" else None
        groups.append((layer, columns, reference, starts, explainer, members))
    for images, _, idx in progress(make_loader(dataset, batch_size=ctx.config.batch_size), desc="assign", unit="batch"):
        linkage = np.full((len(images), len(names)), np.inf)
        outputs = None
        if spec.task == "keypoints":  # the keypoint to explain depends on the maps: look at them first
            with torch.no_grad():
                outputs = groups[0][4].model(images.to(ctx.device))
        for layer, columns, reference, starts, explainer, members in groups:
            target = None if members is None else _weakest_keypoint(outputs, members)
            explained, relevance = explainer.relevance(images, target)
            outputs = explained if outputs is None else outputs
            heat = explainer.heatmap(layer, relevance[layer]).double().cpu().numpy().reshape(len(images), -1)
            for _, _, block in distance_blocks(heat, reference, device=ctx.device, block_rows=len(heat)):
                linkage[:, columns] = single_linkage(block, starts)
        check_finite(outputs, dataset, idx)
        predicted = outputs.argmax(1).cpu().numpy() if spec.task == "classification" else decode_keypoints(outputs).cpu().numpy()
        yield {"linkage": linkage, "predicted": predicted}


def _feature_linkage(ctx: Context, method: str, clusters: pd.DataFrame, names: list[str], dataset: ImageDataset):
    """Batch by batch, the ``(b, K)`` single-linkage distances, in the feature space ``method`` clustered in, of the
    improvement images' features to the clusters' members, and the model's predictions."""
    errors = read_table(ctx.workspace.layer_clusters_csv(method), {"image": "str"}, fix=redo(f"cluster --method {method}"))["image"]
    features = load_array(ctx.workspace.cluster_dir(method) / "features.npy", ndim=2, rows=len(errors), finite=True,
                          fix=redo(f"cluster --method {method}"))
    space = method_space(ctx, method)
    if len(space.mean) != features.shape[1]:
        raise HuddError(f"{ctx.workspace.cluster_dir(method) / 'space.npz'}: made for {len(space.mean)} features, features.npy has "
                        f"{features.shape[1]}; {redo(f'cluster --method {method}')}")
    row_of = {image: i for i, image in enumerate(errors)}
    order, starts = _sorted_by_cluster(np.array([names.index(c) for c in clusters["cluster"]]), np.arange(len(names)))
    reference = space.transform(features[[row_of[image] for image in clusters["image"].to_numpy()[order]]])
    extractors = method_extractors(ctx, method)
    batch = ctx.config.batch_size  # batch by batch, so that a rank's rows are computed as a single process computes them
    for blocks, outputs in zip(block_batches(extractors, dataset, batch_size=batch, device=ctx.device, precision=ctx.precision),
                               predict_batches(ctx.model.module, dataset, batch_size=batch, device=ctx.device, desc=None)):
        improvement = space.transform(np.concatenate(blocks, axis=1))
        linkage = np.empty((len(improvement), len(names)))
        for start, stop, block in distance_blocks(improvement, reference, device=ctx.device, block_rows=batch):
            linkage[start:stop] = single_linkage(block, starts)
        yield {"linkage": linkage, "predicted": outputs.argmax(1) if ctx.model.spec.task == "classification" else outputs}


def _linkage_rows(ctx: Context, start: int, stop: int, listing, space: str, method: str, clusters: pd.DataFrame, names: list[str]):
    """Batch by batch, the single-linkage distances and predictions of the improvement images ``start:stop`` (one rank's
    share under torchrun)."""
    dataset = ctx.dataset(listing_rows(listing, start, stop), cache=False)
    if space == HEATMAPS:
        return _heatmap_linkage(ctx, clusters, names, dataset)
    return _feature_linkage(ctx, method, clusters, names, dataset)


def run(ctx: Context, *, method: str | None = None, budget: int | None = None, force: bool = False) -> AssignOutcome:
    """Run (or skip, when current) the assignment to the clusters of ``method`` (default: the workspace's
    active method); see the module docstring."""
    ws = ctx.workspace
    method = resolve(method, ctx.model.spec.task)[0] if method else ws.active_method()["name"]
    clusters = _clusters(ctx, method)
    names = sorted(clusters["cluster"].unique(), key=cluster_order)
    sizes = clusters["cluster"].value_counts().reindex(names).to_numpy()
    test = read_table(ws.test_result, {"image": "str", "correct": "bool"}, fix=redo("test"))
    if budget is not None and budget <= 0:
        raise HuddError(f"--budget {budget}: selects no image; give a positive number of images to label")
    quota = quotas(sizes, n_test=len(test), accuracy=float(test["correct"].mean()), sf=ctx.config.sf, budget=budget)
    if quota.sum() == 0:
        raise HuddError(f"sf == {ctx.config.sf}: every cluster's quota rounds to 0 ({len(test)} test images, "
                        f"{int((~test['correct']).sum())} errors); raise --sf or give --budget")
    listing = ctx.listing("ImprovementSet", unlabelled_ok=True)
    space = selection_space(ctx, method)
    config = {"sf": ctx.config.sf, "budget": budget, "lrp_rule": ctx.config.lrp_rule, "device": ctx.device.type, "method": method,
              "select_in": space, "precision": ctx.config.precision}
    clustering = "cluster" if method == PAPER else method  # the step that made the clusters
    inputs = {clustering: ws.step_entry(clustering)["fingerprint"], "model": ctx.model_hash, "ImprovementSet": ctx.listing_hash(listing)}
    compared = clusters
    if space == HEATMAPS and method != PAPER:
        compared, inputs["cluster"] = _in_heatmap_layer(ctx, clusters)
    spec = ctx.model.spec

    def compute(fingerprint: str, resume: bool):
        folder = ws.rows_staging("assign")  # the distances and predictions, kept until the step is done
        parts = sharded(ctx, "assign", _linkage_rows, len(listing), listing, space, method, compared, names, folder=folder,
                        fingerprint=fingerprint, resume=resume)
        linkage, predicted = parts["linkage"], parts["predicted"]
        chosen = np.full(len(listing), -1, np.int64)
        rank = np.zeros(len(listing), np.int64)
        distance = np.full(len(listing), np.nan)
        # face elements live in different layers, so their distances are not comparable: each is assigned
        # on its own, largest total quota first, and an image goes to at most one cluster
        elements = {}
        for column, name in enumerate(names):
            elements.setdefault(_face_element(name), []).append(column)
        for columns in sorted(elements.values(), key=lambda columns: -quota[columns].sum()):
            free = np.flatnonzero(chosen < 0)
            c, r, d = ranked_assignment(linkage[np.ix_(free, columns)], quota[columns])
            taken = c >= 0
            chosen[free[taken]] = np.array(columns)[c[taken]]
            rank[free[taken]], distance[free[taken]] = r[taken], d[taken]
        table = pd.DataFrame({"image": list(listing.ids), "cluster": [names[c] if c >= 0 else "" for c in chosen],
                              "rank": rank, "distance": np.round(distance, 6)})
        if spec.task == "classification":
            table["prediction"] = np.array(spec.classes, dtype=object)[predicted.astype(np.int64)] if len(predicted) else []
        else:
            table["error_px"] = np.round(np.linalg.norm(predicted - listing.targets, axis=-1).mean(axis=1), 4) if len(predicted) else []
        labels = _label_columns(ctx, listing)
        table = pd.concat([table, labels], axis=1)
        unsafe = table[chosen >= 0].sort_values(["cluster", "distance", "image"], key=_cluster_key).reset_index(drop=True)
        out = ws.staging("assign")
        save_npy(out.single_linkage_npy, linkage)
        write_csv(out.unsafe_csv, unsafe)
        selected = unsafe["cluster"].value_counts().reindex(names, fill_value=0).to_numpy()
        write_csv(out.quotas_csv, pd.DataFrame({"cluster": names, "size": sizes, "quota": quota, "selected": selected}))
        write_csv(out.labels_csv, _keep_typed_labels(ctx, unsafe[["image", "cluster", *labels.columns]]))
        for name in names:
            link_images(ctx.case.datasets, unsafe.loc[unsafe["cluster"] == name, "image"], out.unsafe_cluster_dir(name))
        ws.commit(out, [ws.unsafe_dir])
        drop_rows(folder, ws.root)
        return [ws.unsafe_dir]

    record_typed_labels(ws, _prefilled(ws))
    ran = run_step(ctx, "assign", VERSION, config=config, inputs=inputs, compute=compute, force=force, staged=True)
    return AssignOutcome(ran, read_unsafe(ws), pd.read_csv(ws.quotas_csv))


def _cluster_key(column: pd.Series) -> pd.Series:
    """Sort by face element, then C2 before C10."""
    if column.name != "cluster":
        return column
    return column.map(cluster_order)
