"""The black-box pipeline: feature extraction, reduction + density clustering, and the step's outputs."""

import dataclasses
import re
import shutil
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from hudd.cluster.feature_clustering import cluster_features, reduce, relabel, umap_available
from hudd.config import load_config
from hudd.case.data import Case, ImageDataset, list_split
from hudd.core.errors import HuddError
from hudd.explain.features import extract_features, feature_layer, make_extractor
from hudd.models import get_model, load_model
from hudd.steps import feature_cluster as blackbox_step
from hudd.steps.common import open_context
from tests.conftest import copy_case, run_cli


def _blobs(seed: int = 0):
    """4 Gaussian blobs of 50 points in 64 dimensions, well apart."""
    return make_blobs(n_samples=200, n_features=64, centers=4, cluster_std=1.0, center_box=(-5, 5), random_state=seed)


@pytest.fixture
def no_umap(monkeypatch):
    """umap-learn made unimportable, whether or not it is installed."""
    monkeypatch.setitem(sys.modules, "umap", None)
    assert not umap_available()


@pytest.mark.parametrize("clusterer", ["dbscan", "hdbscan"])
@pytest.mark.parametrize("seed", [0, 1], ids=lambda s: f"seed{s:#x}")
def test_planted_blobs_are_recovered(clusterer, seed):
    features, truth = _blobs(seed)
    result = cluster_features(features, clusterer=clusterer, seed=0)
    assert adjusted_rand_score(truth, result.labels) >= 0.9
    assert result.n_clusters == 4
    assert sum(row["chosen"] for row in result.grid) == 1
    again = cluster_features(features, clusterer=clusterer, seed=0)
    assert np.array_equal(again.labels, result.labels) and np.array_equal(again.embedding, result.embedding)


def test_outliers_are_noise_and_named_noise():
    """Far, isolated points are DBSCAN noise (with PCA: UMAP draws isolated points into the nearest cluster)."""
    features, truth = _blobs()
    outliers = np.random.default_rng(0).uniform(-15, 15, size=(10, features.shape[1]))
    result = cluster_features(np.vstack([features, outliers]), reducer="pca", seed=0)
    assert (result.labels[200:] == -1).all() and result.n_noise == 10
    assert adjusted_rand_score(truth, result.labels[:200]) >= 0.9
    names = blackbox_step.cluster_names(result.labels)
    assert set(names[200:]) == {"noise"} and set(names[:200]) == {"C1", "C2", "C3", "C4"}


def test_relabel_orders_clusters_by_size_and_keeps_noise():
    assert relabel(np.array([7, 3, 3, -1, 7, 7, 5, 5])).tolist() == [0, 1, 1, -1, 0, 0, 2, 2]


def test_no_structure_and_too_few_images_give_one_cluster():
    """With PCA; UMAP finds clumps even in Gaussian noise, and its 2-D silhouette then passes the 0.25 bar."""
    gaussian = cluster_features(np.random.default_rng(0).normal(size=(300, 16)), reducer="pca", seed=0)
    assert gaussian.params == {"fallback": "no-structure"} and gaussian.n_clusters == 1 and gaussian.n_noise == 0
    constant = cluster_features(np.ones((20, 8)), seed=0)
    assert constant.params == {"fallback": "no-structure"} and constant.n_clusters == 1
    few = cluster_features(np.random.default_rng(0).normal(size=(5, 8)), seed=0)
    assert few.params == {"fallback": "too-few-images"} and few.labels.tolist() == [0] * 5


def test_pca_stands_in_for_umap_when_it_is_missing(no_umap):
    embedding, used, _ = reduce(_blobs()[0], reducer="auto")
    assert used == "pca" and embedding.shape == (200, 10)
    with pytest.raises(ValueError, match="umap-learn"):
        reduce(_blobs()[0], reducer="umap")
    with pytest.raises(ValueError, match="clusterer == 'kmeans'"):
        cluster_features(_blobs()[0], clusterer="kmeans")


def test_feature_layer_is_the_penultimate_layer():
    assert feature_layer(get_model("alexnet-small", num_classes=8, image_size=32)) == "classifier.6"
    assert feature_layer(get_model("kpnet", num_keypoints=4, image_size=32, width=0.05)) == "decoder.2"
    assert feature_layer(torchvision.models.resnet18(weights=None)) == "fc"


@pytest.fixture(scope="module")
def resnet18_state():
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None, num_classes=8).state_dict()


def _model(case):
    return load_model(case.models / "alexnet-small.pt").module


@pytest.mark.parametrize("damage", ["missing", "shape"])
def test_backbone_weights_that_do_not_fit_name_the_file(trained_case, resnet18_state, tmp_path, damage):
    state = dict(resnet18_state)
    if damage == "missing":
        del state["layer2.0.conv1.weight"]
        fragment = "missing layer2.0.conv1.weight"
    else:
        state["conv1.weight"] = torch.zeros(64, 1, 7, 7)
        fragment = "conv1.weight is [64, 1, 7, 7] in the file, [64, 3, 7, 7] in the backbone"
    path = tmp_path / "resnet18.pt"
    torch.save(state, path)
    with pytest.raises(HuddError) as info:
        make_extractor("resnet18", model=_model(Case(trained_case)), weights=path)
    message = str(info.value)
    assert message.startswith(f"{path}: weights do not fit torchvision resnet18") and fragment in message


def test_extractor_choices_are_checked(trained_case, tmp_path):
    model = _model(Case(trained_case))
    with pytest.raises(HuddError, match="^extractor vgg0: unknown"):
        make_extractor("vgg0", model=model, weights=tmp_path / "w.pt")
    with pytest.raises(HuddError, match="needs --weights FILE"):
        make_extractor("resnet18", model=model)
    with pytest.raises(HuddError, match="leave --weights out"):
        make_extractor("model", model=model, weights=tmp_path / "w.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(HuddError, match=f"{tmp_path / 'junk.pt'}: cannot read as PyTorch weights"):
        make_extractor("resnet18", model=model, weights=tmp_path / "junk.pt")


def test_backbone_features_of_grayscale_images(trained_case, resnet18_state, tmp_path):
    """A fine-tuned (8-class) resnet18 loads; 32 px grayscale images become 224 px RGB; one 512-d row per image."""
    path = tmp_path / "resnet18.pt"
    torch.save(resnet18_state, path)
    case = Case(trained_case)
    loaded = load_model(case.models / "alexnet-small.pt")
    listing = list_split(case, "TestSet", spec=loaded.spec)
    few = dataclasses.replace(listing, ids=listing.ids[:6], targets=listing.targets[:6])
    extractor = make_extractor("resnet18", model=loaded.module, weights=path)
    assert (extractor.size, extractor.layer) == ((224, 224), "fc")
    features = extract_features(extractor, ImageDataset(case, few, loaded.spec), batch_size=4, device=torch.device("cpu"))
    assert features.shape == (6, 512) and np.isfinite(features).all()


def test_backbone_weights_in_a_training_checkpoint_load(trained_case, resnet18_state, tmp_path):
    """``{'epoch', 'model_state_dict', 'optimizer'}`` with DataParallel's ``module.`` prefix: the same backbone."""
    bare, wrapped = tmp_path / "bare.pt", tmp_path / "checkpoint.pth"
    torch.save(resnet18_state, bare)
    torch.save({"epoch": 7, "model_state_dict": {f"module.{k}": v for k, v in resnet18_state.items()}, "optimizer": {}}, wrapped)
    model = _model(Case(trained_case))
    images = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        expected, found = (make_extractor("resnet18", model=model, weights=path).module(images) for path in (bare, wrapped))
    torch.testing.assert_close(found, expected, rtol=0, atol=0)
    torch.save({"epoch": 7, "optimizer": {}}, tmp_path / "no-weights.pth")
    with pytest.raises(HuddError, match="a dict with keys epoch, optimizer, none of which holds the model's weights"):
        make_extractor("resnet18", model=model, weights=tmp_path / "no-weights.pth")


def test_step_writes_every_output_and_is_deterministic(trained_case, tmp_path, no_umap):
    case = tmp_path / "case"
    shutil.copytree(trained_case, case)
    assert run_cli("test", str(case)).exit_code == 0
    bad = tmp_path / "bad.pt"
    torch.save({"conv1.weight": torch.zeros(1)}, bad)
    with open_context(case, load_config(case, {}), command="test") as ctx:
        outcome = blackbox_step.run(ctx)
        folder = ctx.workspace.cluster_dir("blackbox")
        first = (folder / "clusters.csv").read_bytes()
        assert blackbox_step.run(ctx).ran is False
        blackbox_step.run(ctx, force=True)
        assert (folder / "clusters.csv").read_bytes() == first
        errors = pd.read_csv(ctx.workspace.test_result).query("~correct")
    with open_context(case, load_config(case, {"weights": str(bad)}), command="test") as ctx:
        with pytest.raises(HuddError, match=f"^{re.escape(str(bad))}: weights do not fit torchvision mobilenet_v3_small"):
            blackbox_step.run(ctx, extractor="mobilenet_v3_small")
    assert (folder / "clusters.csv").read_bytes() == first
    assert outcome.ran
    for name in ("features.npy", "embedding.npy", "clusters.csv", "grid.csv", "embedding.png", "method.csv", "space.npz"):
        assert (folder / name).is_file(), name
    clusters = outcome.clusters
    assert clusters["image"].tolist() == errors["image"].tolist()
    assert np.load(folder / "features.npy").shape == (len(errors), 128)
    summary = outcome.summary.iloc[0]
    assert summary["reducer"] == "pca" and "umap-learn is not installed" in summary["note"]
    noise = clusters["cluster"] == "noise"
    assert (summary["n"], summary["k"], summary["noise"]) == (len(errors), clusters.loc[~noise, "cluster"].nunique(), noise.sum())
    for name in clusters["cluster"].unique():
        assert (folder / name).is_dir() and (folder / f"{name}.gif").is_file() and (folder / f"{name}.png").is_file()
        assert len(list((folder / name).iterdir())) == int((clusters["cluster"] == name).sum())
    assert not (case / "HUDD" / "clusters.csv").exists() and not (case / "HUDD" / "summary.csv").exists()


def test_cli_runs_beside_hudds_clusters_and_evaluate_compares_both(analyzed, tmp_path, no_umap):
    case = copy_case(analyzed, tmp_path)
    hudd_clusters = (case / "HUDD/clusters.csv").read_bytes()
    result = run_cli("cluster", str(case), "--method", "blackbox")
    assert result.exit_code == 0, result.output
    assert "note: umap-learn is not installed" in result.output and "ClusterAnalysis/blackbox" in result.output
    assert (case / "HUDD/clusters.csv").read_bytes() == hudd_clusters
    assert run_cli("cluster", str(case), "--force").exit_code == 0
    assert (case / "HUDD/ClusterAnalysis/blackbox/clusters.csv").is_file(), "rerunning HUDD's clustering keeps the black-box one"
    assert run_cli("evaluate", str(case), "--compare").exit_code == 0
    compared = pd.read_csv(case / "HUDD/clusterings.csv")
    blackbox = compared[compared["method"] == "blackbox"]
    assert len(blackbox) == 1 and (compared["images"] == compared["images"].iloc[0]).all()
