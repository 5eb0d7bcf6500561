"""Write a simulated case folder: ``DataSets/{TrainingSet,TestSet,ImprovementSet}`` with ``params.csv``.

Classification tasks (``gaze``, ``openness``, and the families of :data:`hudd.sim.params.FAMILIES`:
``signs``, RGB traffic signs, and ``glyphs``, grayscale digits) use the image-folder layout
``<Set>/<Class>/<id>.png``; ``landmarks`` writes ``<Set>/images/<id>.png`` and ``<Set>/keypoints.csv``.
Every set has a ``params.csv`` (image relative to the set folder, label, every parameter of the
task's family, the derived quantities that define a hazard, such as ``border_distance`` for gaze,
``cause``). Every image also gets a foreground mask (the opening between the lids,
see :func:`hudd.sim.render.eye_masks`; the visible sign; the glyph's strokes) at
``<Set>/masks/<same path as the image>``, 8-bit grayscale 0/255, for Model Doctor's space-wise
constraint. ``DataSets/simulation.json`` records the settings and the format of what was written
(:data:`FORMAT`; 2 = with masks), so a rerun with the same ones can be skipped; a simulation of an
older format with the same settings gets its masks added (its images stay as they are: they would
come out byte-identical). The same seed gives byte-identical files.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pandas as pd

from ..case.data import MASKS_FOLDER
from ..core.errors import HuddError
from ..core.progress import echo, progress
from ..core.files import atomic_path, remove, write_csv, write_text
from .params import (FAMILIES, GAZE_CLASSES, OPENNESS_CLASSES, PARAMETERS, TASKS, derived_parameters, gaze_class, openness_class,
                     sample_parameters)
from .render import KEYPOINT_NAMES, eye_keypoints, eye_masks, render_eyes

__all__ = ["SimulationSettings", "simulate_case", "simulated_task", "SPLITS", "SIMULATION_RECORD", "FORMAT"]

SPLITS = ("TrainingSet", "TestSet", "ImprovementSet")
SIMULATION_RECORD = "simulation.json"
FORMAT = 2  # what a simulation writes: 1 = images, params.csv (and keypoints.csv); 2 = also masks/
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
    if task in FAMILIES:
        return FAMILIES[task].labels(params)
    if task == "gaze":
        return np.array(GAZE_CLASSES, dtype=object)[gaze_class(params["gaze_angle"])]
    if task == "openness":
        return np.array(OPENNESS_CLASSES, dtype=object)[openness_class(params["openness"])]
    return np.array(["eye"] * len(params["openness"]), dtype=object)


def _write_png(path: Path, image: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        iio.imwrite(tmp, image, extension=".png")


def _plan(split: str, n: int, split_index: int, settings: SimulationSettings):
    """The parameters, causes, labels and image paths (relative to the set folder) of one set."""
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
    return params, causes, labels, relpaths


def _render(task: str, params: dict[str, np.ndarray], size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One chunk's uint8 images and 0/255 masks, from the task's family or the eye renderer."""
    if task in FAMILIES:
        images, masks = FAMILIES[task].render(params, size, rng)
    else:
        images, masks = render_eyes(params, size, rng), eye_masks(params, size)
    return images, masks.astype(np.uint8) * np.uint8(255)


def _add_masks(root: Path, split: str, n: int, split_index: int, settings: SimulationSettings) -> None:
    """Write only the masks of a set simulated before masks existed (its images stay untouched).

    Only eye tasks can need it: the other families were written with their masks from the start.
    """
    params, _, _, relpaths = _plan(split, n, split_index, settings)
    for chunk in progress(range((n + _CHUNK - 1) // _CHUNK), desc=f"masks {split}", unit="batch"):
        lo, hi = chunk * _CHUNK, min(n, (chunk + 1) * _CHUNK)
        masks = eye_masks({k: v[lo:hi] for k, v in params.items()}, settings.size).astype(np.uint8) * np.uint8(255)
        for i, mask in enumerate(masks):
            _write_png(root / split / MASKS_FOLDER / relpaths[lo + i], mask)


def _simulate_split(root: Path, split: str, n: int, split_index: int, settings: SimulationSettings) -> None:
    params, causes, labels, relpaths = _plan(split, n, split_index, settings)
    set_dir = root / split
    for folder in sorted({str(Path(r).parent) for r in relpaths}):
        (set_dir / folder).mkdir(parents=True, exist_ok=True)
        (set_dir / MASKS_FOLDER / folder).mkdir(parents=True, exist_ok=True)
    keypoints = []
    n_chunks = (n + _CHUNK - 1) // _CHUNK
    for chunk in progress(range(n_chunks), desc=f"simulate {split}", unit="batch"):
        lo, hi = chunk * _CHUNK, min(n, (chunk + 1) * _CHUNK)
        chunk_params = {k: v[lo:hi] for k, v in params.items()}
        noise_rng = np.random.default_rng(np.random.SeedSequence([settings.seed, split_index, chunk, 1]))
        images, masks = _render(settings.task, chunk_params, settings.size, noise_rng)
        for i, (image, mask) in enumerate(zip(images, masks)):
            _write_png(set_dir / relpaths[lo + i], image)
            _write_png(set_dir / MASKS_FOLDER / relpaths[lo + i], mask)
        if settings.task == "landmarks":
            keypoints.append(eye_keypoints(chunk_params, settings.size))
    table = pd.DataFrame({"image": relpaths, "label": labels})
    for name in FAMILIES[settings.task].PARAMETERS if settings.task in FAMILIES else PARAMETERS:
        table[name] = np.round(params[name], 6)
    for name, values in derived_parameters(settings.task, params).items():
        table[name] = np.round(values, 6)
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

    Returns True when it wrote the images. Returns False when the folder already holds a simulation
    with the same settings: of :data:`FORMAT`, it writes nothing; of an older format (made before
    masks), it adds the masks and leaves the images alone (what it would write is byte-identical).
    Existing sets with other settings, or not made by the simulator, are replaced only with
    ``force``: the simulator never deletes a user's data on its own.
    """
    settings.check()
    datasets = Path(case) / "DataSets"
    record = datasets / SIMULATION_RECORD
    wanted = {**asdict(settings), "format": FORMAT}
    existing = [s for s in SPLITS if (datasets / s).exists()]
    if existing and not force:
        try:
            found = json.loads(record.read_text())
        except (OSError, ValueError):
            found = None
        if found == wanted:
            return False
        if not (isinstance(found, dict) and {**found, "format": FORMAT} == wanted and found.get("format", 1) < FORMAT):
            raise HuddError(f"{datasets}: already holds {', '.join(existing)}; pass --force to replace them, or choose another case folder")
        echo(f"simulate: {datasets} was simulated before masks existed; adding them (DataSets/<Set>/masks/), the images stay as they are")
        for index, (split, n) in enumerate(settings.counts().items()):
            _add_masks(datasets, split, n, index, settings)
        write_text(record, json.dumps(wanted, indent=2, sort_keys=True) + "\n")
        return False
    remove(record, datasets)
    for split in existing:
        remove(datasets / split, datasets)
    datasets.mkdir(parents=True, exist_ok=True)
    for index, (split, n) in enumerate(settings.counts().items()):
        _simulate_split(datasets, split, n, index, settings)
    (Path(case) / "DNNModels").mkdir(parents=True, exist_ok=True)
    write_text(record, json.dumps(wanted, indent=2, sort_keys=True) + "\n")
    return True


def simulated_task(datasets: Path) -> str | None:
    """The task ``hudd simulate`` wrote ``datasets`` for (from its record), or None for data of any other origin."""
    try:
        task = json.loads((Path(datasets) / SIMULATION_RECORD).read_text()).get("task")
    except (OSError, ValueError, AttributeError):
        return None
    return task if task in TASKS else None
