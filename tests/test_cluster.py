"""Step 1b: distances, WICD, knee, cut against brute-force references; hudd cluster through the CLI."""

import itertools
import shutil
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pandas as pd
import pytest
from scipy.cluster.hierarchy import fcluster
from scipy.spatial.distance import pdist, squareform

from hudd.cluster.clustering import choose_k, cut, derivative, k_range, ward_linkage, wicd_curve
from hudd.cluster.distance import distance_blocks, euclidean_distances, minmax_scale
from tests.conftest import copy_case, run_cli

SEED = 0xC1


def brute_force_wicd(distances: np.ndarray, labels: np.ndarray) -> float:
    """The paper's equations 5-6 with plain loops: mean pairwise distance per cluster, weighted by size."""
    n, k = len(labels), labels.max() + 1
    total = 0.0
    for c in range(k):
        members = [i for i in range(n) if labels[i] == c]
        pairs = [distances[i, j] for i, j in itertools.combinations(members, 2)]
        icd = sum(pairs) / len(pairs) if pairs else 0.0
        total += icd * len(members) / n
    return total / k


def test_distances_match_pdist_with_near_duplicates():
    rng = np.random.default_rng(SEED)
    x = rng.normal(size=(70, 300)) * 50 + 1000  # large norms: where the GEMM form loses precision
    x[1] = x[0] + 1e-3  # planted near-duplicates
    x[2] = x[0]
    expected = squareform(pdist(x))
    for block_rows in (None, 16):
        d = euclidean_distances(x, block_rows=block_rows)
        np.testing.assert_allclose(d, expected, rtol=1e-9, atol=1e-6)
        assert np.array_equal(d, d.T) and np.all(np.diag(d) == 0)
    assert abs(euclidean_distances(x)[0, 1] - np.sqrt(300) * 1e-3) < 1e-6
    assert euclidean_distances(x)[0, 2] == 0.0


def test_scaled_blocks_equal_scaled_input():
    rng = np.random.default_rng(SEED)
    x = rng.normal(size=(30, 4, 5))
    offset, factor = minmax_scale(x)
    scaled = (x.reshape(30, -1) - x.min()) / (x.max() - x.min())
    np.testing.assert_allclose(euclidean_distances(x, scale=(offset, factor), block_rows=7), squareform(pdist(scaled)), atol=1e-12)
    queries = rng.normal(size=(9, 20))
    rows = np.concatenate([block for _, _, block in distance_blocks(queries, x.reshape(30, -1), block_rows=4)])
    np.testing.assert_allclose(rows, np.linalg.norm(queries[:, None] - x.reshape(30, -1)[None], axis=-1), atol=1e-10)


def test_constant_layer_scales_to_zero_and_nan_names_the_row():
    assert minmax_scale(np.full((4, 3), 2.5)) == (2.5, 0.0)
    bad = np.zeros((5, 3))
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="row 3"):
        minmax_scale(bad, block_rows=2)


@pytest.mark.parametrize("n", [2, 3, 7, 40])
def test_fast_wicd_equals_the_papers_formula_for_every_k(n):
    rng = np.random.default_rng(SEED + n)
    distances = squareform(pdist(rng.normal(size=(n, 6))))
    Z = ward_linkage(distances)
    fast = wicd_curve(distances, Z)
    for k in range(1, n + 1):
        labels = cut(Z, k)
        assert labels.max() + 1 == k
        reference = brute_force_wicd(distances, labels)
        assert fast[k - 1] == pytest.approx(reference, rel=1e-9, abs=1e-12), k


def test_cut_equals_scipy_fcluster():
    rng = np.random.default_rng(SEED)
    distances = squareform(pdist(rng.normal(size=(50, 8))))
    Z = ward_linkage(distances)
    for k in range(1, 51):
        ours, scipy_labels = cut(Z, k), fcluster(Z, k, criterion="maxclust")
        assert len(set(zip(ours, scipy_labels))) == k == len(set(scipy_labels)), k
    sizes = np.bincount(cut(Z, 6))
    assert list(sizes) == sorted(sizes, reverse=True), "C1 is the largest cluster"


@pytest.mark.parametrize("planted", [3, 5, 8])
def test_planted_blobs_give_back_their_number(planted):
    rng = np.random.default_rng(SEED + planted)
    centres = rng.normal(size=(planted, 64)) * 10
    x = np.concatenate([c + rng.normal(size=(30, 64)) * 0.5 for c in centres])
    distances = euclidean_distances(x)
    Z = ward_linkage(distances)
    ks = k_range(len(x))
    k, method = choose_k(ks, wicd_curve(distances, Z)[ks - 1])
    assert (k, method) == (planted, "derivative-knee")
    labels = cut(Z, k)
    assert all(len(set(labels[i * 30:(i + 1) * 30])) == 1 for i in range(planted))


@pytest.mark.parametrize("elbow", [6, 10, 15])
def test_knee_of_a_curve_with_a_known_elbow(elbow):
    ks = np.arange(2, 41)
    curve = np.where(ks < elbow, (elbow - ks) ** 2.0, 0.0) + 0.01 * (40 - ks)
    k, method = choose_k(ks, curve)
    assert method == "derivative-knee" and abs(k - elbow) <= 1


def test_derivative_is_fourth_order_inside_and_simpler_at_the_ends():
    x = np.arange(10.0)
    np.testing.assert_allclose(derivative(x**3)[2:-2], 3 * x[2:-2] ** 2, atol=1e-9), "exact for cubics"
    assert derivative(x**2)[1] == pytest.approx(2.0)
    assert derivative(x**2)[0] == 1.0 and derivative(np.array([5.0])).tolist() == [0.0]


def test_edge_cases_never_crash():
    assert len(k_range(1)) == len(k_range(2)) == len(k_range(3)) == 0
    assert k_range(4).tolist() == [2]
    assert choose_k(np.array([2]), np.array([0.3])) == (2, "single-k")
    assert choose_k(np.arange(2, 6), np.zeros(4)) == (2, "flat")
    assert choose_k(np.arange(2, 4), np.array([0.3, 0.1]))[0] in (2, 3)
    identical = np.zeros((6, 6))
    Z = ward_linkage(identical)
    assert np.all(wicd_curve(identical, Z) == 0)
    assert sorted(np.bincount(cut(Z, 2))) == [3, 3] or cut(Z, 2).max() == 1
    assert wicd_curve(np.zeros((1, 1)), np.zeros((0, 4))).tolist() == [0.0]


# ---- through the CLI ---------------------------------------------------------------------------

@pytest.fixture
def analysed(tmp_path: Path, explained_case: Path) -> Path:
    """A writable copy of the session's case with heatmaps."""
    return copy_case(explained_case, tmp_path)


def test_cluster_writes_every_artifact_and_selects_one_layer(analysed: Path):
    result = run_cli("cluster", str(analysed))
    assert result.exit_code == 0, result.output
    ws = analysed / "HUDD"
    summary = pd.read_csv(ws / "summary.csv", keep_default_na=False)
    assert list(summary.columns) == ["group", "layer", "alias", "n", "k", "wicd", "knee_method", "xlsx", "selected", "method",
                                     "representation", "why"]
    assert summary["selected"].sum() == 1
    best = summary.loc[summary["selected"]].iloc[0]
    assert best["wicd"] == summary["wicd"].min()
    assert (summary["method"] == "paper").all() and best["layer"] in best["representation"]
    assert best["why"].startswith(f"k = {best['k']}: ") and "selected: the lowest WICD" in best["why"]
    other = summary.loc[~summary["selected"]].iloc[0]
    assert f"not selected: WICD above {best['wicd']:.4g} of {best['layer']}" in other["why"], "a user sees why a layer lost"
    assert f"why: {best['why']}" in result.output
    errors = pd.read_csv(ws / "Heatmaps/images.csv")
    clusters = pd.read_csv(ws / "ClusterAnalysis/paper/clusters.csv")
    assert clusters["image"].tolist() == errors["image"].tolist()
    assert set(clusters["layer"]) == {best["layer"]}
    assert clusters["cluster"].nunique() == best["k"]
    for layer in summary["layer"]:
        folder = ws / "ClusterAnalysis" / layer
        d = np.load(folder / "distances.npy")
        assert d.shape == (len(errors), len(errors)) and np.array_equal(d, d.T)
        assert {"distances.xlsx", "wicd.csv", "wicd.png", "clusters.csv"} <= {p.name for p in folder.iterdir()}
    folder = ws / "ClusterAnalysis" / best["layer"]
    for name, size in clusters["cluster"].value_counts().items():
        assert len(list((folder / name).iterdir())) == size
        assert iio.improps(folder / f"{name}.gif", index=None).shape[0] == min(size, 100)
        assert (folder / f"{name}.png").is_file()
    assert (ws / best["layer"] / "C1.gif").is_file(), "the selected layer is linked up as in the original"
    assert f"selected layer {best['layer']}" in result.stdout


def test_cluster_is_deterministic_and_skips_when_current(analysed: Path, tmp_path: Path):
    twin = tmp_path / "twin"
    shutil.copytree(analysed, twin)
    assert run_cli("cluster", str(analysed)).exit_code == 0
    assert run_cli("cluster", str(twin)).exit_code == 0
    for name in ("summary.csv", "ClusterAnalysis/paper/clusters.csv", "clusters.csv"):
        assert (analysed / "HUDD" / name).read_bytes() == (twin / "HUDD" / name).read_bytes()
    stamp = (analysed / "HUDD/summary.csv").stat().st_mtime_ns
    assert run_cli("cluster", str(analysed)).exit_code == 0
    assert (analysed / "HUDD/summary.csv").stat().st_mtime_ns == stamp


def _keep_errors(case: Path, n: int) -> None:
    results = pd.read_csv(case / "HUDD/testResult.csv")
    wrong = np.flatnonzero(~results["correct"].to_numpy())
    results.loc[wrong[n:], "correct"] = True
    results.to_csv(case / "HUDD/testResult.csv", index=False)


@pytest.mark.parametrize("n", [1, 3])
def test_very_few_errors_give_one_cluster_with_a_message(analysed: Path, n: int):
    from click.testing import CliRunner

    from hudd.cli import cli

    _keep_errors(analysed, n)
    assert run_cli("heatmaps", str(analysed)).exit_code == 0
    result = CliRunner().invoke(cli, ["cluster", str(analysed)])
    assert result.exit_code == 0, result.output
    assert "fewer than 4 error-inducing images" in result.stderr
    clusters = pd.read_csv(analysed / "HUDD/ClusterAnalysis/paper/clusters.csv")
    assert len(clusters) == n and set(clusters["cluster"]) == {"C1"}


def test_nan_heatmap_names_the_image(analysed: Path):
    layer = pd.read_csv(analysed / "HUDD/Heatmaps/layers.csv")["layer"][2]
    heatmaps = np.load(analysed / f"HUDD/Heatmaps/{layer}.npy", mmap_mode="r+")
    heatmaps[1, 0, 0] = np.nan
    heatmaps.flush()
    del heatmaps
    image = pd.read_csv(analysed / "HUDD/Heatmaps/images.csv")["image"][1]
    result = run_cli("cluster", str(analysed))
    assert result.exit_code == 2
    assert image in result.stderr and "NaN" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_cluster_before_heatmaps_says_what_to_run(trained_case: Path, tmp_path: Path):
    case = tmp_path / "case"
    shutil.copytree(trained_case, case)
    result = run_cli("cluster", str(case), "--method", "paper")
    assert result.exit_code == 2 and "run `hudd heatmaps" in result.stderr
    result = run_cli("cluster", str(case))
    assert result.exit_code == 2 and "run `hudd test" in result.stderr, "the default method starts from the test results"


def test_a_cluster_of_images_of_several_sizes_exports_its_gif_and_contact_sheet(tmp_path: Path):
    from hudd.export.clusters import export_unit
    from hudd.workspace.workspace import Workspace

    datasets = tmp_path / "DataSets"
    sizes = {"TestSet/a/0.png": (40, 30, 3), "TestSet/a/1.png": (24, 24, 1), "TestSet/b/2.png": (32, 48, 3)}
    for name, shape in sizes.items():
        (datasets / name).parent.mkdir(parents=True, exist_ok=True)
        pixels = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
        iio.imwrite(datasets / name, pixels[:, :, 0] if shape[2] == 1 else pixels)
    ws = Workspace(tmp_path / "HUDD")
    clusters = pd.DataFrame({"image": list(sizes), "cluster": "C1"})
    export_unit(ws, "features.3", datasets, clusters, pd.Series({name: name.split("/")[1] for name in sizes}))
    frames = iio.imread(ws.cluster_gif("features.3", "C1"), index=None)
    assert frames.shape[0] == 3 and max(frames.shape[1:3]) >= 128, "every image a frame, scaled up to at least 128 px"
    sheet = iio.imread(ws.cluster_sheet("features.3", "C1"))
    assert sheet.ndim == 3 and sheet.shape[1] > sheet.shape[0] > 100
    assert sorted(p.name for p in ws.cluster_images_dir("features.3", "C1").iterdir()) == ["a-0.png", "a-1.png", "b-2.png"]
