"""``hudd cluster --method blackbox|pretrained|naive``: root-cause clusters from image features, no heatmaps.

For each error-inducing test image (``testResult.csv``, in file order): a feature vector from a
feature extractor (:mod:`hudd.explain.features`), then a clustering of those vectors
(:mod:`hudd.cluster.feature_clustering`). The methods differ in both:

- ``blackbox`` (after SAFE and the 99-pipeline study): the model's penultimate layer (or a
  torchvision backbone with a user's weights file), standardised, reduced (UMAP, or PCA when
  umap-learn is not installed), DBSCAN/HDBSCAN with parameters chosen by silhouette over a small
  grid; images in no dense region form the group ``noise``;
- ``pretrained``: pooled features of a block of the ImageNet EfficientNet-Lite0 (extra
  ``hudd[pretrained]``), standardised, Ward, k at the knee of the WICD curve;
- ``naive``: the model's penultimate layer, standardised, Ward, k = 10 (a reference only: a
  fixed k needs the answer's size).
- ``joint``: the pretrained block features (what the error images look like) beside the model's
  logit margins (how the model fails on them: sure or torn, between two classes or many), each
  block standardised and weighed equally, Ward, k at the knee of the WICD curve. Appearance
  causes (dark, closed, colour) are held by the first block; causes the model's decision
  geometry defines (an ambiguous gaze, a class border) by the second.

Clusters are ``C1..Ck`` by decreasing size, as HUDD's. Outputs, in ``ClusterAnalysis/<method>/``
(HUDD's own ``clusters.csv`` and ``summary.csv`` are left alone):

- ``features.npy`` ``(n, d)`` float32, and ``space.npz``: the standardisation (and PCA) fitted on
  them (:class:`hudd.cluster.feature_space.FeatureSpace`), the space ``hudd assign`` compares improvement
  images in (for UMAP, the PCA space it embedded);
- ``embedding.npy`` ``(n, m)`` float32 and ``embedding.png``: the clustering space (for Ward, the
  first two principal components, shown only);
- ``clusters.csv`` (image, cluster); ``grid.csv`` (density: every grid point, its scores and the
  one chosen) or ``wicd.csv``/``wicd.png`` (Ward: the WICD curve and the k chosen);
- ``method.csv``: one row: method, extractor, feature layer, weights file, reducer (with a note
  when PCA stood in for UMAP), clusterer, chosen parameters, n, k, noise, silhouette, score, and in
  words the representation and why that k and those features (the time is in the manifest, so the
  same inputs give the same bytes);
- ``C<i>/``, ``C<i>.gif``, ``C<i>.png`` (and ``noise/``, ...) as :func:`hudd.export.clusters.export_unit`
  writes them for HUDD's layers, so evaluate, assign, report and the engineer read any method alike.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..cluster.clustering import why_k
from ..case.data import ImageDataset
from ..core.errors import HuddError, SettingError
from ..evaluate.evaluation import NOISE
from ..export.clusters import export_unit
from ..export.plots import save_figure
from ..cluster.feature_clustering import FeatureClustering, cluster_features, umap_available, ward_features
from ..explain.features import MARGINS, MODEL, PRETRAINED, PRETRAINED_BLOCK, FeatureExtractor, block_batches, make_extractors
from ..methods import FEATURE_METHODS, REGISTRY, WARD, Method
from ..core.progress import echo
from ..core.rows import drop as drop_rows
from ..core.files import file_hash, save_npy, write_csv
from ..cluster.naming import cluster_name
from ..export.wicd import write_wicd
from .common import Context, describe_images, error_positions, error_rows, image_keypoints, method_paths, run_step, sharded

__all__ = ["FeatureOutcome", "METHODS", "run", "cluster_names", "VERSION"]

VERSION = 3  # 2: methods pretrained and naive; space.npz; method.csv (was blackbox.csv); 3: method.csv says why
PCA_NOTE = "umap-learn is not installed: PCA used instead of UMAP (pip install 'hudd[umap]')"


METHODS = {name: method for name, method in REGISTRY.items() if name in FEATURE_METHODS}


@dataclass
class FeatureOutcome:
    """``method.csv``, ``clusters.csv`` and ``grid.csv`` (or ``wicd.csv``) as tables."""

    ran: bool
    summary: pd.DataFrame
    clusters: pd.DataFrame
    grid: pd.DataFrame


def cluster_names(labels: np.ndarray) -> list[str]:
    """``C1..Ck`` for labels ``0..k-1``, :data:`hudd.evaluate.evaluation.NOISE` for ``-1``."""
    return [NOISE if label < 0 else cluster_name("", int(label)) for label in labels]


def _error_dataset(ctx: Context, errors: pd.DataFrame) -> ImageDataset:
    """The error-inducing test images, in ``testResult.csv`` order, as the model reads them."""
    listing = ctx.listing("TestSet")
    rows = error_positions(ctx, errors, listing)
    subset = dataclasses.replace(listing, ids=tuple(listing.ids[i] for i in rows), targets=listing.targets[rows])
    return ctx.dataset(subset)


def _features_rows(ctx: Context, start: int, stop: int, errors: pd.DataFrame, extractor: str, weights: Path | None):
    """Batch by batch, the features of the error-inducing images ``start:stop`` (one rank's share under torchrun): one
    block per extractor, ``block<i>``."""
    key = ("extractors", extractor, weights)
    if key not in ctx.cache:
        ctx.cache[key] = make_extractors(extractor, model=ctx.model.module, weights=weights)
    dataset = _error_dataset(ctx, errors.iloc[start:stop])
    for blocks in block_batches(ctx.cache[key], dataset, batch_size=ctx.config.batch_size, device=ctx.device,
                                precision=ctx.precision):
        yield {f"block{i}": block for i, block in enumerate(blocks)}


def _params_text(params: dict) -> str:
    """``min_samples=5 eps=2.71``: the chosen parameters without their scores."""
    shown = {k: v for k, v in params.items() if k not in ("silhouette", "score", "eps_quantile")}
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items())


def _plot(path: Path, result: FeatureClustering, names: list[str], title: str) -> None:
    """The first two dimensions of the clustering space, one colour per cluster, noise as grey crosses."""
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    points = result.embedding[:, :2] if result.embedding.shape[1] >= 2 else np.pad(result.embedding, ((0, 0), (0, 1)))
    names = np.asarray(names, dtype=object)
    colours = plt.get_cmap("tab20")
    for i, name in enumerate(cluster_names(np.arange(result.n_clusters))):
        members = names == name
        ax.scatter(points[members, 0], points[members, 1], s=14, color=colours(i % 20), label=f"{name} ({members.sum()})")
    noise = names == NOISE
    if noise.any():
        ax.scatter(points[noise, 0], points[noise, 1], s=14, marker="x", color="0.6", label=f"{NOISE} ({noise.sum()})")
    axis = "UMAP" if result.reducer == "umap" else "PC"
    ax.set_xlabel(f"{axis}1")
    ax.set_ylabel(f"{axis}2")
    ax.set_title(title, fontsize=9)
    if result.n_clusters <= 20:
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    save_figure(fig, path)


def _joined(extractors: list[FeatureExtractor], attribute: str) -> str:
    """One attribute of every extractor, joined with ``+`` as their names are."""
    return "+".join(str(getattr(extractor, attribute)) for extractor in extractors)


def _summary(method: Method, extractor_name: str, extractors: list[FeatureExtractor], result: FeatureClustering,
             n_features: int) -> pd.DataFrame:
    params = result.params
    weights = next((extractor.weights for extractor in extractors if extractor.weights is not None), "")
    return pd.DataFrame([{
        "method": method.name, "extractor": _joined(extractors, "name"), "extractor_name": extractor_name,
        "layer": _joined(extractors, "layer"), "weights": str(weights), "features": n_features, "reducer": result.reducer,
        "note": PCA_NOTE if result.reducer == "pca" and not umap_available() else "",
        "clusterer": result.clusterer, "params": _params_text(params), "n": len(result.labels), "k": result.n_clusters,
        "noise": result.n_noise, "silhouette": params.get("silhouette", float("nan")), "score": params.get("score", float("nan")),
        "representation": _representation(extractors, result), "why": _why(extractor_name, extractors, result),
    }])


def _source(extractor: FeatureExtractor) -> str:
    """Where one extractor's features come from, in words."""
    if extractor.name == MARGINS:
        return "the model's logit margins"
    network = "the model's features" if extractor.name == MODEL else f"the {extractor.name} backbone's pooled features"
    return f"{network} at the input of {extractor.layer}"


def _representation(extractors: list[FeatureExtractor], result: FeatureClustering) -> str:
    """What was clustered, in words."""
    space = "standardised" if result.reducer == "standardise" else f"standardised, {result.reducer}-reduced"
    weighing = ", each block weighed equally" if len(extractors) > 1 else ""
    return f"{' beside '.join(_source(extractor) for extractor in extractors)}, {space}{weighing}; {result.clusterer}"


def _layer_reason(name: str, extractor: FeatureExtractor) -> str:
    """Why one extractor's features, in words."""
    if extractor.name == MODEL:
        return "its penultimate layer (the input of the classifier)"
    if extractor.name == MARGINS:
        return "the model's logit margins (how sure it is and how its doubt is split, no class identity)"
    if name == PRETRAINED:
        return f"block {PRETRAINED_BLOCK}, the default, chosen on the evaluation suite's development seeds (README)"
    return "the layer asked for with --extractor"


def _why(extractor_name: str, extractors: list[FeatureExtractor], result: FeatureClustering) -> str:
    """Why these features and this number of clusters, in words."""
    layers = " and ".join(_layer_reason(name, extractor) for name, extractor in zip(extractor_name.split("+"), extractors))
    k = why_k(result.n_clusters, result.ward.method) if result.ward is not None \
        else f"k = {result.n_clusters}: the {result.clusterer} parameters with the best score over the grid (grid.csv)"
    return f"{k}; features: {layers}"


def _check_options(ctx: Context, method: str, reducer: str) -> None:
    if method not in METHODS:
        raise HuddError(f"--method {method}: unknown; use one of {', '.join(METHODS)}")
    if reducer == "umap" and not umap_available():
        raise HuddError(f"{ctx.config.where('reducer')} umap: umap-learn is not installed; pip install 'hudd[umap]', "
                        "or use auto or pca")


def _cluster(ctx: Context, features: np.ndarray, blocks: tuple[int, ...], clusterer: str, reducer: str,
             k: int | None) -> FeatureClustering:
    if clusterer == WARD:
        return ward_features(features, k_min=ctx.config.k_min, k_max=ctx.config.k_max, k=k, seed=ctx.config.seed, device=ctx.device,
                             blocks=blocks)
    return cluster_features(features, reducer=reducer, clusterer=clusterer, seed=ctx.config.seed, blocks=blocks)


def run(ctx: Context, method: str = "blackbox", *, extractor: str | None = None, force: bool = False) -> FeatureOutcome:
    """Run (or skip, when current) one feature-based method; see the module docstring.

    Its options come from the config (``extractor``, ``weights``, ``clusterer``, ``reducer``; ``auto``:
    the method's, :data:`hudd.methods.REGISTRY`); ``extractor`` here overrides the config's.

    Raises
    ------
    HuddError
        No finished ``hudd test``, no error-inducing image, an unknown method or extractor, UMAP asked
        for without umap-learn, the pretrained extra missing, or a weights file that does not fit (the
        message names the file).
    """
    settings = ctx.config
    _check_options(ctx, method, settings.reducer)
    spec = METHODS[method]
    extractor = extractor or (spec.clusters_in if settings.extractor == "auto" else settings.extractor)
    clusterer = spec.clusterer if settings.clusterer == "auto" else settings.clusterer
    reducer = settings.reducer
    weights = settings.path("weights", ctx.case.root)
    ws = ctx.workspace
    errors = error_rows(ctx)
    try:
        extractors = make_extractors(extractor, model=ctx.model.module, weights=weights)
    except SettingError as exc:
        raise HuddError(f"{ctx.config.where(exc.key)} {exc.detail}") from None
    if MARGINS in extractor.split("+") and ctx.model.spec.task != "classification":
        raise HuddError(f"{settings.where('extractor')} {extractor}: {MARGINS} are the logit margins of a classifier; this model predicts keypoints")
    paths = method_paths(ctx, method)
    config = {"seed": ctx.config.seed, "batch_size": ctx.config.batch_size, "device": ctx.device.type, "precision": ctx.config.precision,
              "extractor": extractor,
              "layer": _joined(extractors, "layer"), "clusterer": clusterer, "reducer": reducer, "umap": umap_available(), "k": spec.k,
              "k_range": [ctx.config.k_min, ctx.config.k_max]}
    test = ws.step_entry("test") or {}
    inputs = {"test": test.get("fingerprint"), "testResult": file_hash(ws.test_result), "model": ctx.model_hash}
    if weights is not None:
        inputs["weights"] = file_hash(Path(weights))

    def compute(fingerprint: str, resume: bool):
        ctx.cache[("extractors", extractor, weights)] = extractors
        folder = ws.rows_staging(method)  # the features, kept until the step is done
        parts = sharded(ctx, f"{method} features", _features_rows, len(errors), errors, extractor, weights, folder=folder,
                        fingerprint=fingerprint, resume=resume)
        parts = [parts[f"block{i}"] for i in range(len(extractors))]
        features, blocks = np.concatenate(parts, axis=1), tuple(part.shape[1] for part in parts)
        result = _cluster(ctx, features, blocks, clusterer, reducer, spec.k)
        names = cluster_names(result.labels)
        clusters = pd.DataFrame({"image": errors["image"], "cluster": names})
        out = ws.staging(method)
        staged = method_paths(ctx, method, out)
        save_npy(staged["features.npy"], features.astype(np.float32))
        result.space.save(staged["space.npz"])
        save_npy(staged["embedding.npy"], result.embedding.astype(np.float32))
        write_csv(staged["clusters.csv"], clusters)
        title = (f"{method}: {_joined(extractors, 'name')} features, {result.reducer} + {result.clusterer} ({_params_text(result.params)})\n"
                 f"{len(names)} images: k = {result.n_clusters}" + (f", {NOISE} = {result.n_noise}" if result.n_noise else ""))
        _plot(staged["embedding.png"], result, names, title)
        written = list(staged.values())
        if clusterer == WARD:
            written.remove(staged["grid.csv"])
            write_wicd(out, method, result.ward, f"{method} ({len(names)} images)")
            written += [out.wicd_csv(method), out.wicd_png(method)]
        else:
            write_csv(staged["grid.csv"], pd.DataFrame(result.grid or [result.params]))
        written += export_unit(out, method, ctx.case.datasets, clusters, describe_images(ctx), image_keypoints(ctx))
        write_csv(staged["method.csv"], _summary(spec, extractor, extractors, result, features.shape[1]))
        if result.reducer == "pca" and not umap_available():
            echo(f"{method}: {PCA_NOTE}")
        ws.commit(out, [ws.cluster_dir(method)])
        drop_rows(folder, ws.root)
        return [ws.root / path.relative_to(out.root) for path in written]

    ran = run_step(ctx, method, VERSION, config=config, inputs=inputs, compute=compute, force=force, staged=True)
    grid = paths["grid.csv"] if paths["grid.csv"].is_file() else ws.wicd_csv(method)
    return FeatureOutcome(ran, pd.read_csv(paths["method.csv"], keep_default_na=False), pd.read_csv(paths["clusters.csv"]),
                          pd.read_csv(grid))
