"""Step 4: quotas, single linkage, the ranked assignment of Fig. 10, and hudd assign through the CLI."""

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hudd.selection.assignment import quotas, ranked_assignment, single_linkage
from hudd.cluster.distance import distance_blocks
from tests.conftest import copy_case, run_cli

SEED = 0xA5


def test_quotas_follow_equation_7_rounded_half_up():
    # 100 test images, 84 % accuracy, sf 0.3: 4.8 images to select, split 10:5:1
    assert quotas([10, 5, 1], n_test=100, accuracy=0.84, sf=0.3).tolist() == [3, 2, 0]  # 3.0, 1.5, 0.3
    assert quotas([4, 4], n_test=50, accuracy=0.8, sf=0.5).tolist() == [3, 3]  # 2.5 each, half up


def test_budget_is_split_exactly_by_largest_remainders():
    assert quotas([10, 5, 1], n_test=100, accuracy=0.84, sf=0.3, budget=7).tolist() == [4, 2, 1]  # 4.375, 2.19, 0.44
    assert quotas([1, 1, 1], n_test=9, accuracy=0.5, sf=1.0, budget=2).tolist() == [1, 1, 0], "ties: the earlier cluster"
    assert quotas([3, 7], n_test=1, accuracy=0.0, sf=1.0, budget=10).sum() == 10


def test_closest_images_first_within_quotas():
    linkage = np.array([[0.1, 0.5], [0.2, 0.3], [0.3, 0.9], [0.4, 0.35]])
    cluster, rank, distance = ranked_assignment(linkage, np.array([1, 2]))
    # rank 1: C0 takes image 0 (0.1) and is full; C1 takes image 3 (0.35)
    # rank 2: images 1 and 2 are offered to C1; image 1 (0.3) is closer and fills it
    assert cluster.tolist() == [0, 1, -1, 1]
    assert rank.tolist() == [1, 2, 0, 1]
    np.testing.assert_allclose(distance, [0.1, 0.3, np.nan, 0.35])


def test_ties_go_to_the_lower_image_index():
    linkage = np.array([[0.2, 0.9], [0.2, 0.8], [0.2, 0.7]])
    cluster, _, _ = ranked_assignment(linkage, np.array([2, 0]))
    assert cluster.tolist() == [0, 0, -1]


def test_a_full_spurious_cluster_passes_its_candidates_on():
    # cluster 0 is closest to every image but may take one (image 0): at rank 2, image 2 goes to
    # C1 and images 1 and 3 to C2, each image's next cluster
    linkage = np.array([[0.1, 0.5, 0.9], [0.2, 0.9, 0.4], [0.3, 0.6, 0.8], [0.4, 0.95, 0.5]])
    cluster, rank, _ = ranked_assignment(linkage, np.array([1, 1, 2]))
    assert cluster.tolist() == [0, 2, 1, 2]
    assert rank.tolist() == [1, 2, 2, 2]


def test_a_cluster_without_candidates_stays_short():
    linkage = np.array([[0.1, 0.9], [0.2, 0.8]])
    cluster, _, _ = ranked_assignment(linkage, np.array([2, 5]))
    assert cluster.tolist() == [0, 0]
    assert ranked_assignment(np.zeros((0, 2)), np.array([1, 1]))[0].tolist() == []


def test_gemm_single_linkage_equals_a_plain_loop():
    rng = np.random.default_rng(SEED)
    reference = rng.random((23, 40))
    labels = np.sort(rng.integers(0, 4, 23))
    labels[:4] = [0, 1, 2, 3]
    labels = np.sort(labels)
    starts = np.searchsorted(labels, np.arange(4))
    queries = rng.random((11, 40))
    fast = np.concatenate([single_linkage(block, starts) for _, _, block in distance_blocks(queries, reference, block_rows=4)])
    slow = np.array([[min(np.sqrt(((q - reference[j]) ** 2).sum()) for j in range(23) if labels[j] == c) for c in range(4)] for q in queries])
    np.testing.assert_allclose(fast, slow, rtol=1e-10)


# ---- through the CLI ---------------------------------------------------------------------------

@pytest.fixture
def clustered(tmp_path: Path, clustered_case: Path) -> Path:
    """A writable copy of the session's case clustered by the paper's method."""
    return copy_case(clustered_case, tmp_path)


def test_assign_fills_the_quotas_with_improvement_images(clustered: Path):
    result = run_cli("assign", str(clustered), "--sf", "1.0")
    assert result.exit_code == 0, result.output
    ws = clustered / "HUDD"
    unsafe = pd.read_csv(ws / "UnsafeSet/unsafe.csv", keep_default_na=False)
    clusters = pd.read_csv(ws / "ClusterAnalysis/paper/clusters.csv")
    sizes = clusters["cluster"].value_counts()
    test = pd.read_csv(ws / "testResult.csv")
    expected = quotas(sizes.sort_index(key=lambda s: s.str[1:].astype(int)).to_numpy(), n_test=len(test),
                      accuracy=test["correct"].mean(), sf=1.0)
    assert len(unsafe) == min(expected.sum(), 32)
    assert unsafe["image"].is_unique and unsafe["image"].str.startswith("ImprovementSet/").all()
    assert (unsafe["label"] == unsafe["image"].str.split("/").str[1]).all(), "labels pre-filled from the folders"
    labels = pd.read_csv(ws / "UnsafeSet/labels.csv", keep_default_na=False)
    assert list(labels.columns) == ["image", "cluster", "label"] and len(labels) == len(unsafe)
    for name, group in unsafe.groupby("cluster"):
        assert len(list((ws / "UnsafeSet" / name).iterdir())) == len(group)
    linkage = np.load(ws / "UnsafeSet/single_linkage.npy")
    assert linkage.shape == (32, sizes.size) and np.isfinite(linkage).all()


def test_unlabelled_improvement_set_leaves_the_labels_blank(clustered: Path):
    improve = clustered / "DataSets/ImprovementSet"
    for path in list(improve.glob("*/*.png")):
        path.rename(improve / f"{path.parent.name}-{path.name}")
    for folder in [p for p in improve.iterdir() if p.is_dir()]:
        shutil.rmtree(folder)
    result = run_cli("assign", str(clustered), "--budget", "5")
    assert result.exit_code == 0, result.output
    labels = pd.read_csv(clustered / "HUDD/UnsafeSet/labels.csv", keep_default_na=False)
    assert len(labels) == 5 and (labels["label"] == "").all()


@pytest.mark.parametrize("args, message", [
    (["--budget", "0"], "--budget 0: selects no image"),
    (["--sf", "0.0001"], "quota rounds to 0"),
], ids=["budget-0", "quotas-round-to-0"])
def test_selections_of_nothing_are_refused(clustered: Path, args, message):
    result = run_cli("assign", str(clustered), *args)
    assert result.exit_code == 2 and message in result.stderr


def test_assign_before_cluster_says_what_to_run(case: Path):
    result = run_cli("assign", str(case))
    assert result.exit_code == 2 and "run `hudd analyze" in result.stderr


def test_empty_improvement_set_is_a_clear_error(clustered: Path):
    shutil.rmtree(clustered / "DataSets/ImprovementSet")
    (clustered / "DataSets/ImprovementSet").mkdir()
    result = run_cli("assign", str(clustered))
    assert result.exit_code == 2 and "DataSets/ImprovementSet" in result.stderr
