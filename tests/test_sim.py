import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hudd.core.errors import HuddError
from hudd.sim import GAZE_CLASSES, SimulationSettings, render_eyes, sample_parameters, simulate_case
from hudd.sim.params import OPENNESS_THRESHOLD, gaze_class, openness_class
from tests.conftest import TINY


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_same_files_other_seed_other_files(tmp_path: Path, tiny_case: Path):
    again = tmp_path / "again"
    simulate_case(again, TINY)
    assert _digest(again / "DataSets") == _digest(tiny_case / "DataSets")
    other = tmp_path / "other"
    simulate_case(other, SimulationSettings(**{**TINY.__dict__, "seed": 1}))
    assert _digest(other / "DataSets") != _digest(tiny_case / "DataSets")


@pytest.mark.parametrize("angle, label", [
    (0.0, "MiddleRight"), (22.4, "MiddleRight"), (22.6, "TopRight"), (67.4, "TopRight"), (67.6, "TopCenter"),
    (90.0, "TopCenter"), (112.6, "TopLeft"), (180.0, "MiddleLeft"), (225.0, "BottomLeft"), (270.0, "BottomCenter"),
    (315.0, "BottomRight"), (337.6, "MiddleRight"), (359.9, "MiddleRight"),
])
def test_gaze_sectors_follow_the_paper(angle: float, label: str):
    assert GAZE_CLASSES[gaze_class(np.array([angle]))[0]] == label


def test_openness_label_threshold():
    assert openness_class(np.array([OPENNESS_THRESHOLD - 0.01, OPENNESS_THRESHOLD + 0.01])).tolist() == [0, 1]


def test_folder_label_matches_parameters(tiny_case: Path):
    for split in ("TrainingSet", "TestSet", "ImprovementSet"):
        params = pd.read_csv(tiny_case / "DataSets" / split / "params.csv")
        folders = params["image"].str.split("/").str[0]
        assert (folders == params["label"]).all()
        assert (np.array(GAZE_CLASSES)[gaze_class(params["gaze_angle"].to_numpy())] == params["label"]).all()
        assert all((tiny_case / "DataSets" / split / name).is_file() for name in params["image"])


def test_hazards_are_rare_in_training_and_frequent_in_test(tiny_case: Path):
    train = pd.read_csv(tiny_case / "DataSets/TrainingSet/params.csv")
    test = pd.read_csv(tiny_case / "DataSets/TestSet/params.csv")
    assert (train["cause"] != "none").mean() == pytest.approx(TINY.hazard_rate_train, abs=0.01)
    assert (test["cause"] != "none").mean() == pytest.approx(TINY.hazard_rate, abs=0.02)
    assert set(test["cause"]) == {"none", "closed", "dim", "yaw", "border", "center"}
    border = test[test["cause"] == "border"]["gaze_angle"].to_numpy()
    assert np.all(np.abs(((border - 22.5) % 45.0 + 22.5) % 45.0 - 22.5) <= 3.0)


def test_the_pupil_is_where_the_gaze_points():
    """The darkest blob (pupil) sits right of centre for gaze 0 deg, above it for 90 deg, and so on.

    The iris moves on an ellipse (wider than tall), so its direction in the image is
    atan2(0.26 sin(angle), 0.42 cos(angle)).
    """
    rng = np.random.default_rng(0)
    params, _ = sample_parameters("gaze", 8, 0.0, rng)
    params.update(gaze_angle=np.arange(8) * 45.0, gaze_magnitude=np.full(8, 1.0), head_yaw=np.zeros(8), head_pitch=np.zeros(8),
                  openness=np.full(8, 1.0), noise=np.zeros(8), light_strength=np.zeros(8), brightness=np.ones(8))
    images = render_eyes(params, 64, rng).astype(float)
    for angle, image in zip(params["gaze_angle"], images):
        ys, xs = np.nonzero(image <= image.min() + 10)
        direction = np.degrees(np.arctan2(32 - ys.mean(), xs.mean() - 32)) % 360
        expected = np.degrees(np.arctan2(0.26 * np.sin(np.radians(angle)), 0.42 * np.cos(np.radians(angle)))) % 360
        assert abs((direction - expected + 180) % 360 - 180) < 8, (angle, direction, expected)


def test_landmarks_case_writes_named_keypoints(tmp_path: Path):
    simulate_case(tmp_path, SimulationSettings(task="landmarks", n_train=8, n_test=4, n_improve=0, size=64))
    table = pd.read_csv(tmp_path / "DataSets/TestSet/keypoints.csv")
    assert list(table.columns[:3]) == ["image", "upper_lid_0_x", "upper_lid_0_y"]
    assert table.shape == (4, 1 + 13 * 2)
    assert table["iris_centre_x"].between(0, 63).all()


def test_simulate_refuses_to_replace_other_data(tmp_path: Path):
    (tmp_path / "DataSets/TrainingSet/cats").mkdir(parents=True)
    with pytest.raises(HuddError, match="pass --force"):
        simulate_case(tmp_path, TINY)
    assert (tmp_path / "DataSets/TrainingSet/cats").is_dir(), "the user's data is untouched"
