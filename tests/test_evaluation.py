"""Purity, coverage and the variance ratio RR on tables with a known answer."""

import numpy as np
import pandas as pd
import pytest

from hudd.evaluate.evaluation import evaluate_clusters, variance_ratio


def _params() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 40
    return pd.DataFrame({
        "image": [f"TestSet/{i}.png" for i in range(n)],
        "cause": ["dim"] * 10 + ["yaw"] * 10 + ["none"] * 20,
        "brightness": np.r_[np.full(10, 0.1), rng.uniform(0.7, 1.1, 30)],
        "gaze_angle": np.r_[rng.uniform(0, 360, 10), np.full(10, 358.0) + np.arange(10) % 2 * 4.0, rng.uniform(0, 360, 20)],
    })


def test_purity_is_weighted_and_coverage_needs_a_dominated_cluster_of_three():
    params = _params()
    images = params["image"]
    clusters = pd.DataFrame({"image": list(images[:10]) + list(images[10:14]) + list(images[20:24]) + [images.iloc[14], images.iloc[15]],
                             "cluster": ["C1"] * 10 + ["C2"] * 4 + ["C2"] * 4 + ["C3", "C10"]})
    evaluation = evaluate_clusters(clusters, params)
    table = evaluation.table.set_index("cluster")
    assert list(evaluation.table["cluster"]) == ["C1", "C2", "C3", "C10"], "natural order"
    assert table.loc["C1", "purity"] == 1.0 and table.loc["C1", "dominant_cause"] == "dim"
    assert table.loc["C2", "purity"] == 0.5 and table.loc["C2", "dominant_cause"] == "none", "ties go to the first name"
    assert evaluation.purity == pytest.approx((10 + 4 + 1 + 1) / 20)
    assert evaluation.causes == ["dim", "yaw"]
    assert evaluation.covered == ["dim"], "yaw only dominates singletons"
    assert evaluation.line() == "purity=0.80 coverage=1/2 clusters=4"


def test_purity_over_injected_causes_leaves_the_nominal_errors_out():
    """A cluster mixing yaw errors with errors on nominal images is pure once the nominal ones, which have no known
    cause, are left out; the summary says how many there were."""
    from hudd.cli.summaries import evaluation_summary

    params = _params()
    images = params["image"]
    clusters = pd.DataFrame({"image": list(images[:10]) + list(images[10:16]) + list(images[20:26]),
                             "cluster": ["C1"] * 10 + ["C2"] * 12})
    evaluation = evaluate_clusters(clusters, params)
    assert evaluation.purity == pytest.approx((10 + 6) / 22)
    assert evaluation.purity_injected == 1.0 and evaluation.nominal_errors == 6
    assert "6 errors on nominal images (no injected cause); purity over the others: 1.00" in evaluation_summary(evaluation)


def test_rr_is_near_one_for_the_parameter_a_cluster_shares_and_circular_for_angles():
    params = _params()
    dim = pd.DataFrame({"image": params["image"][:10], "cluster": "C1"})
    yaw = pd.DataFrame({"image": params["image"][10:20], "cluster": "C2"})
    table = evaluate_clusters(pd.concat([dim, yaw]), params).table.set_index("cluster")
    assert table.loc["C1", "rr_brightness"] == pytest.approx(1.0)
    assert table.loc["C1", "rr_gaze_angle"] < 0.5
    # 358 and 2 degrees are 4 degrees apart: circularly the yaw cluster agrees on the angle
    assert table.loc["C2", "rr_gaze_angle"] > 0.99
    assert variance_ratio(np.array([358.0, 2.0]), params["gaze_angle"].to_numpy()) < 0, "linearly they look spread"


def test_rr_of_a_constant_parameter_is_undefined():
    assert np.isnan(variance_ratio(np.ones(3), np.ones(10)))
