"""The ``signs`` and ``glyphs`` simulator families: case layout, determinism, and what each hazard does."""

import hashlib
import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pandas as pd
import pytest

from hudd.cli import cli
from hudd.sim import FAMILIES, TASKS, SimulationSettings, sample_parameters, simulate_case
from hudd.sim import glyphs, signs

SETTINGS = {
    task: SimulationSettings(task=task, n_train=48, n_test=96, n_improve=16, size=32, seed=0, hazard_rate_train=0.05, hazard_rate=0.5)
    for task in FAMILIES
}
FAMILY_TASKS = sorted(FAMILIES)


@pytest.fixture(scope="module", params=FAMILY_TASKS)
def family_case(request, tmp_path_factory) -> tuple[str, Path]:
    """A tiny 32 px case of each family (read-only for tests)."""
    case = tmp_path_factory.mktemp(f"{request.param}-case")
    simulate_case(case, SETTINGS[request.param])
    return request.param, case


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def _read(path: Path) -> np.ndarray:
    return np.asarray(iio.imread(path))


def test_same_seed_same_files_other_seed_other_files(tmp_path: Path, family_case):
    task, case = family_case
    again = tmp_path / "again"
    simulate_case(again, SETTINGS[task])
    assert _digest(again / "DataSets") == _digest(case / "DataSets")
    other = tmp_path / "other"
    simulate_case(other, SimulationSettings(**{**SETTINGS[task].__dict__, "seed": 1}))
    assert _digest(other / "DataSets") != _digest(case / "DataSets")


def test_layout_params_and_masks_are_consistent(family_case):
    task, case = family_case
    family = FAMILIES[task]
    record = json.loads((case / "DataSets/simulation.json").read_text())
    assert record["task"] == task and record["size"] == 32
    for split, n in SETTINGS[task].counts().items():
        set_dir = case / "DataSets" / split
        params = pd.read_csv(set_dir / "params.csv")
        assert list(params.columns) == ["image", "label", *family.PARAMETERS, "cause"]
        assert len(params) == n
        assert (params["image"].str.split("/").str[0] == params["label"]).all()
        assert (np.array(family.CLASSES)[params["class_id"].astype(int)] == params["label"]).all()
        on_disk = sorted(str(p.relative_to(set_dir)) for p in set_dir.glob("*/*.png") if p.parts[-2] != "masks")
        assert on_disk == sorted(params["image"])
        assert all((set_dir / "masks" / name).is_file() for name in params["image"])
        assert set(params["cause"]) <= {"none", *family.HAZARDS}


def test_every_cause_in_the_test_set_and_hazards_rare_in_training(family_case):
    task, case = family_case
    train = pd.read_csv(case / "DataSets/TrainingSet/params.csv")
    test = pd.read_csv(case / "DataSets/TestSet/params.csv")
    assert set(test["cause"]) == {"none", *TASKS[task]}
    counts = test["cause"][test["cause"] != "none"].value_counts()
    assert counts.max() - counts.min() <= 1, "causes are equally frequent"
    assert (train["cause"] != "none").mean() == pytest.approx(0.05, abs=0.03)
    assert (test["cause"] != "none").mean() == pytest.approx(0.5, abs=0.02)


@pytest.mark.parametrize("task", FAMILY_TASKS)
def test_each_image_has_exactly_one_cause(task: str):
    """An image's hazard parameter leaves its nominal range; all its other parameters stay nominal."""
    family = FAMILIES[task]
    params, causes = sample_parameters(task, 600, 0.6, np.random.default_rng(3))
    nominal = {name: (lo <= params[name]) & (params[name] <= hi) for name, (lo, hi) in family._NOMINAL.items()}
    for cause, (name, _) in family._HAZARD_RANGES.items():
        hit = causes == cause
        assert hit.sum() == 60
        assert not nominal[name][hit].any(), cause
        others = [nominal[other][hit] for other, _ in family._HAZARD_RANGES.values() if other != name]
        assert np.all(others), cause
    assert np.all([ok[causes == "none"] for ok in nominal.values()])


def test_images_have_the_right_channels_size_and_masks(family_case):
    task, case = family_case
    params = pd.read_csv(case / "DataSets/TestSet/params.csv")
    for name in params["image"]:
        image = _read(case / "DataSets/TestSet" / name)
        mask = _read(case / "DataSets/TestSet/masks" / name)
        assert image.dtype == np.uint8 and mask.dtype == np.uint8
        assert image.shape == ((32, 32, 3) if task == "signs" else (32, 32))
        assert mask.shape == (32, 32)
        assert set(np.unique(mask)) <= {0, 255}
        assert 0 < (mask > 0).sum() < 0.8 * mask.size, name


@pytest.mark.parametrize("task, size", [("signs", 64), ("glyphs", 32)])
def test_cli_default_size(tmp_path: Path, task: str, size: int):
    from click.testing import CliRunner

    result = CliRunner().invoke(cli, ["--quiet", "simulate", str(tmp_path), "--task", task, "--train", "4", "--test", "2", "--improve", "0"])
    assert result.exit_code == 0, result.output
    first = pd.read_csv(tmp_path / "DataSets/TestSet/params.csv")["image"][0]
    assert _read(tmp_path / "DataSets/TestSet" / first).shape[:2] == (size, size)


def test_cli_offers_every_task():
    option = next(p for p in cli.commands["simulate"].params if p.name == "task")
    assert list(option.type.choices) == list(TASKS)


# --- what each hazard does, on images rendered directly (paired: same parameters but the hazard's) ---


def _render(family, params: dict, size: int = 32, seed: int = 0):
    images, masks = family.render({k: np.asarray(v, float) for k, v in params.items()}, size, np.random.default_rng(seed))
    return images.astype(np.float64), masks


def _with(params: dict, **changes) -> dict:
    return {**params, **{k: np.full(len(params["class_id"]), v, float) for k, v in changes.items()}}


@pytest.fixture(scope="module")
def sign_sample():
    params, causes = signs.sample_parameters(480, 0.6, np.random.default_rng(5))
    return params, causes


@pytest.fixture(scope="module")
def glyph_sample():
    params, causes = glyphs.sample_parameters(480, 0.6, np.random.default_rng(5))
    return params, causes


def _subset(params: dict, keep: np.ndarray) -> dict:
    return {k: v[keep] for k, v in params.items()}


def test_sign_mask_is_where_the_sign_is(sign_sample):
    params, causes = sign_sample
    nominal = _subset(params, causes == "none")
    images, masks = _render(signs, nominal)
    ys, xs = np.mgrid[:32, :32]
    area = masks.sum(axis=(1, 2))
    cx = (masks * xs).sum(axis=(1, 2)) / area
    cy = (masks * ys).sum(axis=(1, 2)) / area
    assert np.median(np.abs(cx - ((nominal["x"] + 1) * 16 - 0.5))) < 1.5
    assert np.median(np.abs(cy - ((nominal["y"] + 1) * 16 - 0.5))) < 1.5


def test_sign_dark_images_are_darker(sign_sample):
    params, causes = sign_sample
    dark, _ = _render(signs, _subset(params, causes == "dark"))
    nominal, _ = _render(signs, _subset(params, causes == "none"))
    assert dark.mean() < 0.3 * nominal.mean()


def test_sign_small_signs_have_smaller_masks(sign_sample):
    params, causes = sign_sample
    _, small = _render(signs, _subset(params, causes == "small"))
    _, nominal = _render(signs, _subset(params, causes == "none"))
    assert np.median(small.sum(axis=(1, 2))) < 0.2 * np.median(nominal.sum(axis=(1, 2)))


def test_sign_occlusion_hides_a_large_part_of_the_sign(sign_sample):
    params, causes = sign_sample
    for cause, low, high in (("occlusion", 0.3, 0.8), ("none", 0.0, 0.1)):
        chosen = _subset(params, causes == cause)
        _, visible = _render(signs, chosen)
        _, whole = _render(signs, _with(chosen, occlusion=0.0))
        hidden = 1.0 - visible.sum(axis=(1, 2)) / whole.sum(axis=(1, 2))
        assert low <= hidden.mean() <= high, (cause, hidden.mean())


def test_sign_blur_removes_edges(sign_sample):
    params, causes = sign_sample
    chosen = _subset(params, causes == "blur")
    blurred, _ = _render(signs, _with(chosen, noise=0.0))
    sharp, _ = _render(signs, _with(chosen, noise=0.0, blur=0.0))
    edges = lambda im: np.abs(np.diff(im, axis=2)).mean()  # noqa: E731
    assert edges(blurred) < 0.5 * edges(sharp)


def test_sign_colour_turns_only_stop_signs_blue(sign_sample):
    params, causes = sign_sample
    hit = causes == "colour"
    assert (signs.labels(params)[hit] == "stop").all()
    turned, masks = _render(signs, _subset(params, hit))
    stops, stop_masks = _render(signs, _subset(params, (causes == "none") & (signs.labels(params) == "stop")))
    blue_minus_red = lambda im, m: ((im[..., 2] - im[..., 0]) * m).sum() / m.sum()  # noqa: E731
    assert blue_minus_red(turned, masks) > 30 and blue_minus_red(stops, stop_masks) < -60


def test_sign_clutter_makes_the_background_busy(sign_sample):
    params, causes = sign_sample
    busy = lambda im, m: (np.abs(np.diff(im, axis=2)).mean(axis=3) * ~m[:, :, 1:] * ~m[:, :, :-1]).mean()  # noqa: E731
    cluttered = _subset(params, causes == "clutter")
    quiet = _subset(params, causes == "none")
    assert busy(*_render(signs, _with(cluttered, noise=0.0))) > 3 * busy(*_render(signs, _with(quiet, noise=0.0)))


def test_glyph_ink_is_on_the_mask(glyph_sample):
    params, causes = glyph_sample
    images, masks = _render(glyphs, _subset(params, causes == "none"))
    on = (images * masks).sum() / masks.sum()
    off = (images * ~masks).sum() / (~masks).sum()
    assert on - off > 100


def test_glyph_thin_strokes_have_fewer_pixels_and_less_ink(glyph_sample):
    params, causes = glyph_sample
    chosen = _subset(params, causes == "thin")
    paper = _render(glyphs, _with(chosen, contrast=0.0))[0]
    thin, thin_masks = _render(glyphs, chosen)
    normal, normal_masks = _render(glyphs, _with(chosen, thickness=0.13))
    assert (thin_masks.sum(axis=(1, 2)) < 0.7 * normal_masks.sum(axis=(1, 2))).all()
    assert (thin - paper).sum() < 0.4 * (normal - paper).sum()


def test_glyph_slant_leans_the_strokes(glyph_sample):
    params, causes = glyph_sample

    def lean(masks):  # horizontal shift per pixel down, from the stroke pixels (y down: > 0 leans left)
        ys, xs = np.mgrid[:32, :32]
        w = masks / masks.sum(axis=(1, 2), keepdims=True)
        mx, my = (w * xs).sum(axis=(1, 2)), (w * ys).sum(axis=(1, 2))
        cov = (w * (xs - mx[:, None, None]) * (ys - my[:, None, None])).sum(axis=(1, 2))
        return cov / (w * (ys - my[:, None, None]) ** 2).sum(axis=(1, 2))

    chosen = _subset(params, causes == "slant")
    upright = lean(_render(glyphs, _with(chosen, slant=0.0))[1])
    slanted = lean(_render(glyphs, chosen)[1])
    assert np.mean(np.sign(upright - slanted) == np.sign(chosen["slant"])) > 0.95
    assert np.abs(slanted - upright).mean() > 0.5


def test_glyph_cut_erases_stroke_pixels(glyph_sample):
    params, causes = glyph_sample
    for cause, most in (("cut", 0.8), ("none", 1.0)):
        chosen = _subset(params, causes == cause)
        _, cut = _render(glyphs, chosen)
        _, whole = _render(glyphs, _with(chosen, cut=0.0))
        kept = cut.sum(axis=(1, 2)) / whole.sum(axis=(1, 2))
        assert kept.mean() <= most, cause
    assert kept.mean() > 0.9, "a nominal nick leaves most of the glyph"


def test_glyph_speckle_sets_many_pixels_black_or_white(glyph_sample):
    params, causes = glyph_sample
    speckled, _ = _render(glyphs, _subset(params, causes == "speckle"))
    clean, _ = _render(glyphs, _subset(params, causes == "none"))
    assert (speckled == 255).mean() > 0.15 and (clean == 255).mean() < 0.02


def test_glyph_low_contrast_ink_is_close_to_the_paper(glyph_sample):
    params, causes = glyph_sample
    for cause, low, high in (("low_contrast", 0, 40), ("none", 100, 255)):
        images, masks = _render(glyphs, _subset(params, causes == cause))
        on = (images * masks).sum() / masks.sum()
        off = (images * ~masks).sum() / (~masks).sum()
        assert low <= on - off <= high, cause


def test_glyph_short_bar_only_shortens_sevens(glyph_sample):
    params, causes = glyph_sample
    hit = causes == "short_bar"
    assert (glyphs.labels(params)[hit] == "seven").all()
    chosen = _subset(params, hit)
    _, short = _render(glyphs, chosen)
    _, full = _render(glyphs, _with(chosen, seven_bar=0.95))
    top = slice(0, 12)  # the bar is in the upper part of the glyph
    assert (short[:, top].sum(axis=(1, 2)) < 0.8 * full[:, top].sum(axis=(1, 2))).all()
    others = _subset(params, glyphs.labels(params) != "seven")
    assert np.array_equal(_render(glyphs, others)[0], _render(glyphs, _with(others, seven_bar=0.2))[0])
