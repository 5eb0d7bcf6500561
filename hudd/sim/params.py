"""Simulator parameters: nominal ranges, injected hazards, and the labels they imply.

Every image is described by the parameters in :data:`PARAMETERS` (one float each). Nominal images
draw from ranges that keep the task easy; an image with an injected hazard has one parameter pushed
outside its nominal range, so each hazard is one distinct root cause of failure. Hazards are rare in
the training set and frequent in the test and improvement sets, as in the HUDD case studies where
the training data lacked the conditions that made the DNN fail.

Gaze angle convention: degrees counter-clockwise from "looking right" in the image (0 = right,
90 = up). The eight gaze classes are 45-degree sectors centred on multiples of 45 degrees, named as
in the paper (TopCenter is 67.5-112.5 degrees).

The other families (traffic signs, digit-like glyphs) keep their parameters, hazards, classes and
renderer in their own modules, listed in :data:`FAMILIES`; :data:`TASKS` names every task's hazards.

Each family also says what evidence of each hazard a description of its cluster should name
(:data:`EVIDENCE`, :func:`evidence`): the parameter the hazard changes and, when the hazard changes
a property of the pixels, that property (:mod:`hudd.describe.image_properties`). Hazards defined by a
derived quantity (a gaze angle near a class border, an openness near the threshold) have that
quantity written into ``params.csv`` too (:func:`derived_parameters`).
"""

from __future__ import annotations

import numpy as np

from . import glyphs, signs
from .evidence import Evidence

__all__ = ["PARAMETERS", "GAZE_CLASSES", "OPENNESS_CLASSES", "HAZARDS", "TASKS", "FAMILIES", "sample_parameters", "gaze_class", "openness_class",
           "OPENNESS_THRESHOLD", "Evidence", "EVIDENCE", "evidence", "derived_parameters"]

PARAMETERS = (
    "gaze_angle", "gaze_magnitude", "openness", "iris_size", "pupil_size", "iris_tone", "head_yaw", "head_pitch",
    "brightness", "light_angle", "light_strength", "skin_tone", "noise",
)
# index = sector of the angle: 0 deg (right), 45, 90 (up), ...
GAZE_CLASSES = ("MiddleRight", "TopRight", "TopCenter", "TopLeft", "MiddleLeft", "BottomLeft", "BottomCenter", "BottomRight")
OPENNESS_CLASSES = ("closed", "open")
OPENNESS_THRESHOLD = 0.3
_BORDER_MARGIN = 6.0  # degrees: nominal gaze angles stay this far from a sector border
_HAZARD_BORDER = 3.0  # degrees: the "border" hazard puts the gaze angle this close to one

_NOMINAL = {
    "gaze_magnitude": (0.5, 1.0),
    "openness": (0.5, 1.0),
    "iris_size": (0.19, 0.25),
    "pupil_size": (0.3, 0.5),
    "iris_tone": (0.2, 0.5),
    "head_yaw": (-20.0, 20.0),
    "head_pitch": (-12.0, 12.0),
    "brightness": (0.75, 1.1),
    "light_angle": (0.0, 360.0),
    "light_strength": (0.0, 0.3),
    "skin_tone": (0.45, 0.8),
    "noise": (0.005, 0.025),
}

HAZARDS = {
    "closed": "nearly closed eye: the iris is barely visible",
    "dim": "very dim light with sensor noise",
    "yaw": "extreme head yaw: the eye is foreshortened and off-centre",
    "border": "gaze angle within 3 degrees of a class border",
    "center": "tiny gaze magnitude: the iris is almost centred",
    "threshold": "openness within 0.05 of the open/closed threshold",
}
TASKS = {
    "gaze": ("closed", "dim", "yaw", "border", "center"),
    "openness": ("dim", "yaw", "threshold"),
    "landmarks": ("closed", "dim", "yaw"),
    "signs": tuple(signs.HAZARDS),
    "glyphs": tuple(glyphs.HAZARDS),
}
# tasks with their own module: PARAMETERS, HAZARDS, EVIDENCE, CLASSES, sample_parameters, labels, render (images and masks)
FAMILIES = {"signs": signs, "glyphs": glyphs}


EVIDENCE = {
    "closed": Evidence("openness", "low", "foreground", "low"),
    "dim": Evidence("brightness", "low", "brightness", "low"),
    "yaw": Evidence("head_yaw", "outside"),
    "border": Evidence("border_distance", "low"),
    "center": Evidence("gaze_magnitude", "low"),
    "threshold": Evidence("threshold_distance", "low"),
}


def evidence(task: str) -> dict[str, Evidence]:
    """The evidence of each of ``task``'s hazards."""
    table = FAMILIES[task].EVIDENCE if task in FAMILIES else EVIDENCE
    return {hazard: table[hazard] for hazard in TASKS[task]}


def derived_parameters(task: str, params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Quantities that define a hazard but are not drawn themselves: the gaze angle's distance (degrees) to
    the nearest class border, the openness's distance to the open/closed threshold."""
    if task == "gaze":
        offset = (np.asarray(params["gaze_angle"]) - 22.5) % 45.0
        return {"border_distance": np.minimum(offset, 45.0 - offset)}
    if task == "openness":
        return {"threshold_distance": np.abs(np.asarray(params["openness"]) - OPENNESS_THRESHOLD)}
    return {}


def gaze_class(angle_deg: np.ndarray) -> np.ndarray:
    """Sector index (0..7, see :data:`GAZE_CLASSES`) of gaze angles in degrees."""
    return (np.floor(((np.asarray(angle_deg) + 22.5) % 360.0) / 45.0).astype(np.int64)) % 8


def openness_class(openness: np.ndarray) -> np.ndarray:
    """0 (closed) below :data:`OPENNESS_THRESHOLD`, else 1 (open)."""
    return (np.asarray(openness) >= OPENNESS_THRESHOLD).astype(np.int64)


def _uniform(rng: np.random.Generator, bounds: tuple[float, float], n: int) -> np.ndarray:
    return rng.uniform(bounds[0], bounds[1], n)


def sample_parameters(task: str, n: int, hazard_rate: float, rng: np.random.Generator) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Draw ``n`` images' parameters for ``task``; a share ``hazard_rate`` carries one hazard each.

    Returns
    -------
    params : dict of str to ndarray of shape (n,)
        One float array per name in :data:`PARAMETERS`.
    causes : ndarray of str, shape (n,)
        The injected hazard of each image, or ``"none"``.

    For a task of :data:`FAMILIES`, the names are that family's ``PARAMETERS`` instead.
    """
    if task in FAMILIES:
        return FAMILIES[task].sample_parameters(n, hazard_rate, rng)
    hazards = TASKS[task]
    params = {name: _uniform(rng, bounds, n) for name, bounds in _NOMINAL.items()}
    sector = rng.integers(0, 8, n)
    params["gaze_angle"] = (sector * 45.0 + rng.uniform(-22.5 + _BORDER_MARGIN, 22.5 - _BORDER_MARGIN, n)) % 360.0
    if task == "openness":
        closed = rng.random(n) < 0.5
        params["openness"] = np.where(closed, rng.uniform(0.0, OPENNESS_THRESHOLD - 0.08, n), rng.uniform(OPENNESS_THRESHOLD + 0.08, 1.0, n))
    n_hazard = int(round(hazard_rate * n))
    causes = np.array(["none"] * n, dtype=object)
    chosen = rng.permutation(n)[:n_hazard]
    causes[chosen] = np.array(hazards, dtype=object)[np.arange(n_hazard) % len(hazards)]
    for hazard in hazards:
        idx = np.flatnonzero(causes == hazard)
        m = len(idx)
        if hazard == "closed":
            params["openness"][idx] = rng.uniform(0.08, 0.2, m)
        elif hazard == "dim":
            params["brightness"][idx] = rng.uniform(0.1, 0.2, m)
            params["noise"][idx] = rng.uniform(0.03, 0.05, m)
        elif hazard == "yaw":
            params["head_yaw"][idx] = rng.choice([-1.0, 1.0], m) * rng.uniform(38.0, 50.0, m)
        elif hazard == "border":
            params["gaze_angle"][idx] = (rng.integers(0, 8, m) * 45.0 + 22.5 + rng.uniform(-_HAZARD_BORDER, _HAZARD_BORDER, m)) % 360.0
        elif hazard == "center":
            params["gaze_magnitude"][idx] = rng.uniform(0.0, 0.15, m)
        elif hazard == "threshold":
            params["openness"][idx] = OPENNESS_THRESHOLD + rng.uniform(-0.05, 0.05, m)
    return params, causes.astype(str)
