"""``hudd cluster --pipeline blackbox``: root-cause clusters from features alone, no heatmaps (after SAFE).

For each error-inducing test image (``testResult.csv``, in file order): a feature vector from a
feature extractor (:mod:`hudd.features`: the model's penultimate layer by default, or a
torchvision backbone with a user's weights file), then standardise, reduce (UMAP, or PCA when
umap-learn is not installed) and DBSCAN/HDBSCAN with parameters chosen by silhouette over a small
grid (:mod:`hudd.blackbox`). Images in no dense region form the group ``noise``; the clusters are
``C1..Ck`` by decreasing size, as HUDD's.

Outputs, in ``ClusterAnalysis/blackbox/`` (HUDD's own ``clusters.csv`` and ``summary.csv`` are
left alone):

- ``features.npy`` ``(n, d)`` float32 and ``embedding.npy`` ``(n, m)`` float32 (the clustering space);
- ``clusters.csv`` (image, cluster), ``grid.csv`` (every grid point: parameters, n_clusters, n_noise,
  silhouette, score, chosen), ``embedding.png`` (the first two dimensions, coloured by cluster);
- ``blackbox.csv``: one row: extractor, feature layer, weights file, reducer (``umap`` | ``pca``)
  with a note when PCA stood in for UMAP, clusterer, chosen parameters, n, k, noise, silhouette,
  score, seconds;
- ``C<i>/``, ``C<i>.gif``, ``C<i>.png`` (and ``noise/``, ...) as :func:`hudd.export.clusters.export_unit`
  writes them for HUDD's layers, so evaluate, report and the engineer read either pipeline alike.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..blackbox import CLUSTERERS, REDUCERS, BlackboxClustering, cluster_features, umap_available
from ..data import ImageDataset
from ..errors import HuddError
from ..evaluation import NOISE
from ..export.clusters import export_unit
from ..export.plots import save_figure
from ..features import MODEL, FeatureExtractor, extract_features, make_extractor
from ..progress import echo
from ..workspace import file_hash, save_npy, write_csv
from .cluster import BLACKBOX_UNIT, cluster_name
from .common import Context, run_step
from .export import describe_images
from .heatmaps import error_positions, error_rows

__all__ = ["BlackboxOutcome", "run", "cluster_names", "VERSION", "UNIT"]

VERSION = 1
UNIT = BLACKBOX_UNIT  # the step's name and its ClusterAnalysis sub-folder
PCA_NOTE = "umap-learn is not installed: PCA used instead of UMAP (pip install 'hudd[umap]')"


@dataclass
class BlackboxOutcome:
    """``blackbox.csv``, ``clusters.csv`` and ``grid.csv`` as tables."""

    ran: bool
    summary: pd.DataFrame
    clusters: pd.DataFrame
    grid: pd.DataFrame


def cluster_names(labels: np.ndarray) -> list[str]:
    """``C1..Ck`` for labels ``0..k-1``, :data:`hudd.evaluation.NOISE` for ``-1``."""
    return [NOISE if label < 0 else cluster_name("", int(label)) for label in labels]


def _paths(ctx: Context) -> dict[str, Path]:
    folder = ctx.workspace.cluster_dir(UNIT)
    names = ("features.npy", "embedding.npy", "clusters.csv", "grid.csv", "embedding.png", "blackbox.csv")
    return {name: folder / name for name in names}


def _error_dataset(ctx: Context, errors: pd.DataFrame) -> ImageDataset:
    """The error-inducing test images, in ``testResult.csv`` order, as the model reads them."""
    listing = ctx.listing("TestSet")
    rows = error_positions(ctx, errors, listing)
    subset = dataclasses.replace(listing, ids=tuple(listing.ids[i] for i in rows), targets=listing.targets[rows])
    return ImageDataset(ctx.case, subset, ctx.model.spec, model_name=ctx.model_name)


def _params_text(params: dict) -> str:
    """``min_samples=5 eps=2.71``: the chosen grid point without its scores."""
    shown = {k: v for k, v in params.items() if k not in ("silhouette", "score", "eps_quantile")}
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items())


def _plot(path: Path, result: BlackboxClustering, names: list[str], title: str) -> None:
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


def _summary(extractor: FeatureExtractor, result: BlackboxClustering, n_features: int, seconds: float) -> pd.DataFrame:
    params = result.params
    return pd.DataFrame([{
        "extractor": extractor.name, "layer": extractor.layer, "weights": str(extractor.weights or ""),
        "features": n_features, "reducer": result.reducer,
        "note": PCA_NOTE if result.reducer == "pca" and not umap_available() else "",
        "clusterer": result.clusterer, "params": _params_text(params), "n": len(result.labels), "k": result.n_clusters,
        "noise": result.n_noise, "silhouette": params.get("silhouette", float("nan")), "score": params.get("score", float("nan")),
        "seconds": round(seconds, 2),
    }])


def _check_options(clusterer: str, reducer: str) -> None:
    if clusterer not in CLUSTERERS:
        raise HuddError(f"--clusterer {clusterer}: unknown; use one of {', '.join(CLUSTERERS)}")
    if reducer not in REDUCERS:
        raise HuddError(f"--reducer {reducer}: unknown; use one of {', '.join(REDUCERS)}")
    if reducer == "umap" and not umap_available():
        raise HuddError("--reducer umap: umap-learn is not installed; pip install 'hudd[umap]', or use --reducer auto or pca")


def run(ctx: Context, *, extractor: str = MODEL, weights: Path | None = None, clusterer: str = "dbscan", reducer: str = "auto",
        force: bool = False) -> BlackboxOutcome:
    """Run (or skip, when current) the black-box pipeline; see the module docstring.

    Parameters
    ----------
    extractor : str
        ``model`` (the case's model, penultimate layer) or a torchvision backbone name (needs ``weights``).
    weights : Path, optional
        State_dict of the backbone (``torch.load(weights_only=True)``); hudd downloads nothing.
    clusterer : str
        ``dbscan`` or ``hdbscan``.
    reducer : str
        ``auto`` (UMAP when umap-learn is installed, else PCA), ``umap`` or ``pca``.

    Raises
    ------
    HuddError
        No finished ``hudd test``, no error-inducing image, an unknown extractor, clusterer or
        reducer, or a weights file that does not fit (the message names the file).
    """
    ws = ctx.workspace
    errors = error_rows(ctx)
    _check_options(clusterer, reducer)
    feature_extractor = make_extractor(extractor, model=ctx.model.module, weights=weights)
    paths = _paths(ctx)
    config = {"seed": ctx.config.seed, "batch_size": ctx.config.batch_size, "device": ctx.device.type, "extractor": extractor,
              "clusterer": clusterer, "reducer": reducer, "umap": umap_available()}
    test = ws.step_entry("test") or {}
    inputs = {"test": test.get("fingerprint"), "testResult": file_hash(ws.test_result), "model": ctx.model_hash}
    if weights is not None:
        inputs["weights"] = file_hash(Path(weights))

    def compute(fingerprint: str, resume: bool):
        started = time.perf_counter()
        dataset = _error_dataset(ctx, errors)
        features = extract_features(feature_extractor, dataset, batch_size=ctx.config.batch_size, device=ctx.device)
        result = cluster_features(features, reducer=reducer, clusterer=clusterer, seed=ctx.config.seed)
        names = cluster_names(result.labels)
        clusters = pd.DataFrame({"image": errors["image"], "cluster": names})
        save_npy(paths["features.npy"], features.astype(np.float32))
        save_npy(paths["embedding.npy"], result.embedding.astype(np.float32))
        write_csv(paths["clusters.csv"], clusters)
        write_csv(paths["grid.csv"], pd.DataFrame(result.grid or [result.params]))
        title = (f"{UNIT}: {feature_extractor.name} features, {result.reducer} + {result.clusterer} ({_params_text(result.params)})\n"
                 f"{len(names)} images: k = {result.n_clusters}, {NOISE} = {result.n_noise}")
        _plot(paths["embedding.png"], result, names, title)
        written = export_unit(ws, UNIT, ctx.case.datasets, clusters, describe_images(ctx))
        write_csv(paths["blackbox.csv"], _summary(feature_extractor, result, features.shape[1], time.perf_counter() - started))
        if result.reducer == "pca" and not umap_available():
            echo(f"{UNIT}: {PCA_NOTE}")
        return list(paths.values()) + written

    ran = run_step(ctx, UNIT, VERSION, config=config, inputs=inputs, compute=compute, force=force)
    return BlackboxOutcome(ran, pd.read_csv(paths["blackbox.csv"], keep_default_na=False), pd.read_csv(paths["clusters.csv"]),
                           pd.read_csv(paths["grid.csv"]))
