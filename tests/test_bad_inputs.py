"""Every bad input ends in one line on stderr naming the file, and exit status 2 (through the real CLI)."""

import shutil
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from tests.conftest import one_line_error, run_cli


@pytest.fixture
def case(tmp_path: Path, tiny_case: Path) -> Path:
    target = tmp_path / "case"
    shutil.copytree(tiny_case, target)
    return target



def test_missing_set_folder(case: Path):
    shutil.rmtree(case / "DataSets/TrainingSet")
    one_line_error(run_cli("train", str(case)), str(case / "DataSets/TrainingSet"), "folder missing")


def test_missing_case_folder(tmp_path: Path):
    one_line_error(run_cli("train", str(tmp_path / "nowhere")), str(tmp_path / "nowhere"), "case folder missing")


def test_empty_class_folder(case: Path):
    (case / "DataSets/TrainingSet/Sideways").mkdir()
    one_line_error(run_cli("train", str(case)), "DataSets/TrainingSet/Sideways", "has no images")


def test_corrupt_image(case: Path):
    victim = sorted((case / "DataSets/TrainingSet/TopLeft").iterdir())[3]
    victim.write_bytes(victim.read_bytes()[:40])
    one_line_error(run_cli("train", str(case), "--epochs", "1"), str(victim), "cannot read image")


def test_non_image_file(case: Path):
    (case / "DataSets/TrainingSet/TopLeft/notes.txt").write_text("labels checked by Ann")
    one_line_error(run_cli("train", str(case)), "TopLeft/notes.txt", "not an image")


def test_text_file_named_png(case: Path):
    fake = case / "DataSets/TrainingSet/TopLeft/zzz.png"
    fake.write_text("not really a png")
    one_line_error(run_cli("train", str(case), "--epochs", "1"), str(fake), "cannot read image")


def test_image_of_the_wrong_size(case: Path):
    odd = case / "DataSets/TrainingSet/TopLeft/zzz.png"
    iio.imwrite(odd, np.zeros((48, 48), np.uint8))
    one_line_error(run_cli("train", str(case), "--epochs", "1"), str(odd), "image is 48x48 grayscale", "expects 32x32 grayscale")


def test_image_of_the_wrong_mode(case: Path):
    rgb = case / "DataSets/TrainingSet/TopLeft/zzz.png"
    iio.imwrite(rgb, np.zeros((32, 32, 3), np.uint8))
    one_line_error(run_cli("train", str(case), "--epochs", "1"), str(rgb), "image is 32x32 RGB", "expects 32x32 grayscale")


def test_test_image_that_does_not_fit_the_model(case: Path):
    rgb = case / "DataSets/TestSet/TopLeft/zzz.png"
    iio.imwrite(rgb, np.zeros((32, 32, 3), np.uint8))
    one_line_error(run_cli("train", str(case), "--epochs", "1"), str(rgb), "image is 32x32 RGB", "alexnet-small.pt expects 32x32 grayscale")
    assert (case / "DNNModels/alexnet-small.pt").is_file(), "the trained model is kept"


def test_unknown_arch(case: Path):
    one_line_error(run_cli("train", str(case), "--arch", "resnet9"), "--arch resnet9", "known: alexnet, alexnet-small, kpnet")


def test_unknown_class_in_test_set_stops_before_training(case: Path):
    shutil.copytree(case / "DataSets/TestSet/TopLeft", case / "DataSets/TestSet/Upwards")
    one_line_error(run_cli("train", str(case)), "DataSets/TestSet/Upwards", "unknown to the model")
    assert not (case / "DNNModels/alexnet-small.pt").exists()


def test_debug_shows_the_traceback(case: Path):
    from click.testing import CliRunner

    from hudd.cli import cli
    from hudd.errors import HuddError

    result = CliRunner().invoke(cli, ["--debug", "train", str(case), "--arch", "resnet9"])
    assert isinstance(result.exception, HuddError)
