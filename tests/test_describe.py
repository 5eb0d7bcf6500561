"""Cluster descriptions: the rule learner, the image properties, and ``hudd describe`` through the CLI."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.ndimage import uniform_filter

from hudd.describe.describe import MIN_IN_CLUSTER, MIN_LIFT, best_condition, describe_clusters
from hudd.describe.image_properties import image_properties
from hudd.evaluate.descriptions import in_direction, score_descriptions
from hudd.sim.params import evidence
from tests.conftest import copy_case, run_cli

RNG = np.random.default_rng(0)


def _members(values: np.ndarray, inside) -> np.ndarray:
    return inside(values) & (RNG.random(len(values)) < 0.95)


@pytest.mark.parametrize("inside, expected", [
    (lambda x: x <= 0.2, "x <= 0.2"),
    (lambda x: x > 0.7, "x > 0.7"),
    (lambda x: (x > 0.4) & (x <= 0.6), "0.4 < x <= 0.6"),
    (lambda x: (x <= 0.1) | (x > 0.9), "x <= 0.1 or > 0.9"),
], ids=["below", "above", "range", "outside-range"])
def test_the_planted_condition_is_found(inside, expected):
    values = np.linspace(0, 1, 2001)
    member = _members(values, inside)
    condition = best_condition("x", pd.Series(values), member)
    assert condition.condition == expected
    assert condition.in_cluster > 0.9 and condition.in_rest < 0.05 and condition.counts


def test_a_category_and_no_condition_on_noise():
    colours = pd.Series(RNG.choice(["red", "green", "blue"], 600))
    member = (colours == "red").to_numpy() & (RNG.random(600) < 0.9)
    assert best_condition("colour", colours, member).condition == "colour = red"
    unrelated = best_condition("x", pd.Series(RNG.random(600)), RNG.random(600) < 0.2)
    assert not unrelated.counts, "a feature unrelated to the cluster does not describe it"


def test_describe_keeps_only_conditions_that_set_the_cluster_apart():
    table = pd.DataFrame({"dark": np.r_[RNG.uniform(0, 0.2, 50), RNG.uniform(0.3, 1, 450)], "unrelated": RNG.random(500)},
                         index=[f"TestSet/{i}.png" for i in range(500)])
    clusters = pd.DataFrame({"image": table.index[:50], "cluster": "C1"})
    rows = describe_clusters(clusters, table, "image")
    assert rows["feature"].tolist() == ["dark"] and rows["condition"][0].startswith("dark <= ")
    assert (rows["lift"] >= MIN_LIFT).all() and (rows["in_cluster"] >= MIN_IN_CLUSTER).all()


def test_a_narrower_condition_that_counts_beats_a_wider_one_that_does_not():
    """A cluster spread over x > 0.4 and crowded above 0.8: x > 0.4 has the larger Youden index but a lift under 2;
    a narrower threshold is what the cluster has in common."""
    values = np.r_[np.linspace(0.4, 1, 700), np.linspace(0.8, 1, 300), np.linspace(0, 1, 2000)]
    member = np.r_[np.ones(1000, bool), np.zeros(2000, bool)]
    condition = best_condition("x", pd.Series(values), member)
    assert condition.counts and condition.condition.startswith("x > ")
    assert 0.6 < float(condition.condition.split(" > ")[1]) < 0.8


def test_equally_separating_features_are_ranked_by_how_far_the_cluster_lies():
    """Four properties set the cluster apart exactly, as speckle noise raises brightness, contrast and sharpness:
    the three kept are those the cluster is farthest from the rest on, in the rest's interquartile ranges."""
    n = 400
    member = np.arange(n) < 40
    rest = RNG.uniform(0, 1, (n, 4))
    shift = np.array([1.1, 1.5, 30.0, 8.0])  # the cluster lies beyond every rest value on each feature
    table = pd.DataFrame(np.where(member[:, None], rest + shift, rest), columns=["brightness", "contrast", "sharpness", "noise"],
                         index=[f"TestSet/{i}.png" for i in range(n)])
    rows = describe_clusters(pd.DataFrame({"image": table.index[member], "cluster": "C1"}), table, "image")
    assert rows["feature"].tolist() == ["sharpness", "noise", "contrast"]


def test_image_properties_read_as_their_names_say():
    scene = RNG.uniform(0, 255, (64, 64, 1))
    image = uniform_filter(scene, size=(3, 3, 1)).astype(np.uint8)
    dark, blurred = (image // 4).astype(np.uint8), uniform_filter(image, size=(5, 5, 1))
    noisy = np.clip(image + RNG.normal(0, 25, image.shape), 0, 255).astype(np.uint8)
    base = image_properties(image)
    assert image_properties(dark)["brightness"] < base["brightness"] / 2
    assert image_properties(blurred)["sharpness"] < base["sharpness"] / 2
    assert image_properties(noisy)["noise"] > 2 * base["noise"]
    assert base["saturation"] == 0 and np.isnan(base["hue"])
    red, green = np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.uint8)
    red[..., 0], green[..., 1] = 200, 200
    assert image_properties(red)["hue"] == pytest.approx(0, abs=1e-6)
    assert image_properties(green)["hue"] == pytest.approx(120)
    assert image_properties(red)["saturation"] == pytest.approx(1)


def test_describe_names_the_parameter_each_injected_cause_changes(analyzed: Path, tmp_path: Path):
    case = copy_case(analyzed, tmp_path)
    ws = case / "HUDD"
    method = json.loads((ws / "manifest.json").read_text())["method"]["name"]
    clusters_csv = ws / "ClusterAnalysis" / method / "clusters.csv"
    params = pd.read_csv(case / "DataSets/TestSet/params.csv")
    hazards = {cause: found.parameter for cause, found in evidence("gaze").items()}
    assert hazards["border"] == "border_distance" and "border_distance" in params, "the simulator writes the derived quantity"
    planted = params[params["cause"].isin(hazards)]
    pd.DataFrame({"image": "TestSet/" + planted["image"], "cluster": planted["cause"]}).to_csv(clusters_csv, index=False)
    result = run_cli("describe", str(case))
    assert result.exit_code == 0, result.output
    descriptions = pd.read_csv(ws / "descriptions.csv")
    assert set(descriptions.columns) == {"cluster", "source", "feature", "condition", "in_cluster", "in_rest", "lift"}
    assert (descriptions["lift"] >= MIN_LIFT).all() and (descriptions["in_cluster"] >= MIN_IN_CLUSTER).all()
    assert not descriptions["feature"].isin(["cause", "label"]).any(), "never described by the answer itself"
    from_params = descriptions[descriptions["source"] == "params"]
    for cause, parameter in hazards.items():
        assert parameter in from_params.loc[from_params["cluster"] == cause, "feature"].tolist(), cause
    assert "image brightness" in descriptions.loc[descriptions["cluster"] == "dim", "feature"].tolist(), "dim light shows in the pixels"
    findings = pd.read_csv(ws / "findings.csv")
    assert sorted(findings["cluster"]) == sorted(hazards)
    assert all(sentence.startswith(f"{c} (") for c, sentence in zip(findings["cluster"], findings["sentence"]))
    assert findings.loc[findings["cluster"] == "closed", "sentence"].str.contains("openness").all()
    assert set(findings["sentence"]) <= set(result.stdout.splitlines())


def test_the_evaluation_checks_the_named_parameter_and_its_direction(tiny_case: Path):
    params = pd.read_csv(tiny_case / "DataSets/TestSet/params.csv")
    planted = params[params["cause"].isin(["dim", "center"])]
    clusters = pd.DataFrame({"image": planted["image"], "cluster": planted["cause"].map({"dim": "C1", "center": "C2"})})
    properties = pd.DataFrame({"brightness": params["brightness"].to_numpy() * 0.9}, index=params["image"])
    scored = score_descriptions(clusters, params, properties, evidence("gaze")).set_index("cause")
    assert scored.loc["dim", "parameter_named"] and scored.loc["center", "parameter_named"]
    assert scored.loc["dim", "property_named"] is True or scored.loc["dim", "property_named"] == 1.0
    assert np.isnan(scored.loc["center", "property_named"]), "a centred iris changes no pixel statistic we measure"
    swapped = evidence("gaze") | {"dim": evidence("gaze")["dim"]._replace(direction="high")}
    assert not score_descriptions(clusters, params, properties, swapped).set_index("cause").loc["dim", "parameter_named"]
    values, member = pd.Series([1.0, 2.0, 50.0, -40.0]), np.array([False, False, True, True])
    assert in_direction(values, member, "outside") and not in_direction(values, member, "low")
