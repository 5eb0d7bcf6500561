"""The built-in simulator: procedural eye, traffic-sign and glyph images with known parameters and injected hazards."""

from .case import SPLITS, SimulationSettings, simulate_case
from .params import FAMILIES, GAZE_CLASSES, HAZARDS, OPENNESS_CLASSES, PARAMETERS, TASKS, sample_parameters
from .render import KEYPOINT_GROUPS, KEYPOINT_NAMES, eye_keypoints, render_eyes

__all__ = [
    "SPLITS", "SimulationSettings", "simulate_case", "FAMILIES", "GAZE_CLASSES", "HAZARDS", "OPENNESS_CLASSES", "PARAMETERS", "TASKS",
    "sample_parameters", "KEYPOINT_GROUPS", "KEYPOINT_NAMES", "eye_keypoints", "render_eyes",
]
