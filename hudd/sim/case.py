"""Write a simulated case folder: ``DataSets/{TrainingSet,TestSet,ImprovementSet}`` with ``params.csv``.

Classification tasks (``gaze``, ``openness``) use the image-folder layout ``<Set>/<Class>/<id>.png``;
``landmarks`` writes ``<Set>/images/<id>.png`` and ``<Set>/keypoints.csv``. Every set has a
``params.csv`` (image relative to the set folder, label, every simulator parameter, ``cause``).
``DataSets/simulation.json`` records the settings, so a rerun with the same ones can be skipped.
The same seed gives byte-identical files.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pandas as pd

from ..errors import HuddError
from ..progress import progress
from ..workspace import atomic_path, write_csv, write_text
from .params import GAZE_CLASSES, OPENNESS_CLASSES, PARAMETERS, TASKS, gaze_class, openness_class, sample_parameters
from .render import KEYPOINT_NAMES, eye_keypoints, render_eyes

__all__ = ["SimulationSettings", "simulate_case", "SPLITS", "SIMULATION_RECORD"]

SPLITS = ("TrainingSet", "TestSet", "ImprovementSet")
SIMULATION_RECORD = "simulation.json"
_CHUNK = 256  # images rendered per call; fixed so the noise stream does not depend on settings


@dataclass(frozen=True)
class SimulationSettings:
    """What ``hudd simulate`` makes: task, images per set, side in pixels, seed, hazard shares."""

    task: str = "gaze"
    n_train: int = 6000
    n_test: int = 3000
    n_improve: int = 3000
    size: int = 64
    seed: int = 0
    hazard_rate_train: float = 0.02
    hazard_rate: float = 0.12

    def check(self) -> None:
        if self.task not in TASKS:
            raise HuddError(f"--task {self.task}: unknown task; choose one of {', '.join(TASKS)}")
        if not 32 <= self.size <= 128:
            raise HuddError(f"--size {self.size}: the simulator draws 32 to 128 px images")
        for name in ("n_train", "n_test", "n_improve"):
            if getattr(self, name) < 0:
                raise HuddError(f"--{name.split('_')[1]} {getattr(self, name)}: must be >= 0")
        for name in ("hazard_rate_train", "hazard_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise HuddError(f"{name} == {getattr(self, name)}: must be between 0 and 1")

    def counts(self) -> dict[str, int]:
        return dict(zip(SPLITS, (self.n_train, self.n_test, self.n_improve)))


def _labels(task: str, params: dict[str, np.ndarray]) -> np.ndarray:
    if task == "gaze":
        return np.array(GAZE_CLASSES, dtype=object)[gaze_class(params["gaze_angle"])]
    if task == "openness":
        return np.array(OPENNESS_CLASSES, dtype=object)[openness_class(params["openness"])]
    return np.array(["eye"] * len(params["openness"]), dtype=object)


def _write_png(path: Path, image: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        iio.imwrite(tmp, image, extension=".png")


def _simulate_split(root: Path, split: str, n: int, split_index: int, settings: SimulationSettings) -> None:
    hazard_rate = settings.hazard_rate_train if split == "TrainingSet" else settings.hazard_rate
    seeds = np.random.SeedSequence([settings.seed, split_index])
    param_rng = np.random.default_rng(seeds.spawn(1)[0])
    params, causes = sample_parameters(settings.task, n, hazard_rate, param_rng)
    labels = _labels(settings.task, params)
    width = max(6, len(str(n)))
    if settings.task == "landmarks":
        relpaths = [f"images/{i:0{width}d}.png" for i in range(n)]
    else:
        relpaths = [f"{label}/{i:0{width}d}.png" for i, label in enumerate(labels)]
    set_dir = root / split
    for folder in sorted({str(Path(r).parent) for r in relpaths}):
        (set_dir / folder).mkdir(parents=True, exist_ok=True)
    keypoints = []
    n_chunks = (n + _CHUNK - 1) // _CHUNK
    for chunk in progress(range(n_chunks), desc=f"simulate {split}", unit="batch"):
        lo, hi = chunk * _CHUNK, min(n, (chunk + 1) * _CHUNK)
        chunk_params = {k: v[lo:hi] for k, v in params.items()}
        noise_rng = np.random.default_rng(np.random.SeedSequence([settings.seed, split_index, chunk, 1]))
        images = render_eyes(chunk_params, settings.size, noise_rng)
        for i, image in enumerate(images):
            _write_png(set_dir / relpaths[lo + i], image)
        if settings.task == "landmarks":
            keypoints.append(eye_keypoints(chunk_params, settings.size))
    table = pd.DataFrame({"image": relpaths, "label": labels})
    for name in PARAMETERS:
        table[name] = np.round(params[name], 6)
    table["cause"] = causes
    write_csv(set_dir / "params.csv", table)
    if settings.task == "landmarks":
        coords = np.concatenate(keypoints).reshape(n, -1) if n else np.zeros((0, 2 * len(KEYPOINT_NAMES)))
        columns = [f"{name}_{axis}" for name in KEYPOINT_NAMES for axis in ("x", "y")]
        kp = pd.DataFrame(np.round(coords, 3), columns=columns)
        kp.insert(0, "image", relpaths)
        write_csv(set_dir / "keypoints.csv", kp)


def simulate_case(case: Path, settings: SimulationSettings, *, force: bool = False) -> bool:
    """Write the simulated data sets of ``settings`` into ``case/DataSets``.

    Returns False (and writes nothing) when the folder already holds a simulation with the same
    settings. Existing sets with other settings, or not made by the simulator, are replaced only
    with ``force``: the simulator never deletes a user's data on its own.
    """
    settings.check()
    datasets = Path(case) / "DataSets"
    record = datasets / SIMULATION_RECORD
    existing = [s for s in SPLITS if (datasets / s).exists()]
    if existing and not force:
        try:
            same = json.loads(record.read_text()) == asdict(settings)
        except (OSError, ValueError):
            same = False
        if same:
            return False
        raise HuddError(f"{datasets}: already holds {', '.join(existing)}; pass --force to replace them, or choose another case folder")
    record.unlink(missing_ok=True)
    for split in existing:
        shutil.rmtree(datasets / split)
    datasets.mkdir(parents=True, exist_ok=True)
    for index, (split, n) in enumerate(settings.counts().items()):
        _simulate_split(datasets, split, n, index, settings)
    (Path(case) / "DNNModels").mkdir(parents=True, exist_ok=True)
    write_text(record, json.dumps(asdict(settings), indent=2, sort_keys=True) + "\n")
    return True
