"""The ``glyphs`` family: procedural handwritten-digit-like grayscale images with injected hazards.

Ten classes, the digits 0-9 named ``zero`` to ``nine`` (:data:`CLASSES`; words, so that no CSV
reader takes a label for a number), each a fixed set of strokes (polylines and sampled arcs in a
glyph box x in [-0.5, 0.5], y in [-1, 1], y down; :data:`_STROKES`). An image draws them as light
ink on dark paper with its own stroke thickness, slant, aspect, rotation, position, size and a
smooth wobble of the strokes (``jitter``), then adds sensor noise and a few salt-and-pepper specks.
Nominal images keep these within ranges that make the task easy (:data:`_NOMINAL`); an image with
a hazard has one parameter pushed outside its range:

- ``thin``, ``slant``, ``cut``, ``speckle`` and ``low_contrast`` hit every class; ``cut`` (a disc of
  the glyph erased) makes the model err into several classes;
- ``short_bar`` is specific to one class: a seven whose top bar is a short flag looks like a one.

The foreground mask is the strokes (at least one pixel wide, so hairlines still have one) minus
the erased disc.
"""

from __future__ import annotations

import numpy as np

from .evidence import Evidence
from .draw import col, cover, grid, sample_with_causes, segment_distance

__all__ = ["CLASSES", "PARAMETERS", "HAZARDS", "EVIDENCE", "sample_parameters", "labels", "render"]

CLASSES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
PARAMETERS = (
    "class_id", "x", "y", "scale", "aspect", "slant", "rotation", "thickness", "jitter", "seven_bar",
    "cut", "cut_angle", "paper", "contrast", "noise", "speckle",
)
HAZARDS = {
    "thin": "hairline strokes, a fraction of a pixel wide (faint)",
    "slant": "extreme slant (shear) of the glyph",
    "cut": "a large disc of the glyph is erased",
    "speckle": "dense salt-and-pepper noise",
    "low_contrast": "ink barely lighter than the paper",
    "short_bar": "a 7 whose top bar is a short flag, like a 1's (class-specific)",
}
EVIDENCE = {
    "thin": Evidence("thickness", "low"),
    "slant": Evidence("slant", "outside"),
    "cut": Evidence("cut", "high"),
    "speckle": Evidence("speckle", "high", "noise", "high"),
    "low_contrast": Evidence("contrast", "low", "contrast", "low"),
    "short_bar": Evidence("seven_bar", "low"),
}


def _arc(cx: float, cy: float, rx: float, ry: float, start: float, stop: float, n: int = 10) -> list[tuple[float, float]]:
    """Points along an elliptic arc, angles in degrees (y down: 90 is the bottom)."""
    a = np.radians(np.linspace(start, stop, n + 1))
    return list(zip(cx + rx * np.cos(a), cy + ry * np.sin(a)))


_POLYLINES = (
    (_arc(0.0, 0.0, 0.45, 0.9, 0.0, 360.0, 16),),
    ([(-0.2, -0.6), (0.05, -0.92), (0.05, 0.92)],),
    (_arc(0.0, -0.45, 0.42, 0.45, 180.0, 395.0) + [(-0.45, 0.9), (0.45, 0.9)],),
    (_arc(0.0, -0.47, 0.4, 0.43, 200.0, 450.0), _arc(0.0, 0.45, 0.45, 0.47, 270.0, 520.0)),
    ([(0.2, 0.92), (0.2, -0.92), (-0.45, 0.35), (0.45, 0.35)],),
    ([(0.4, -0.9), (-0.3, -0.9), (-0.33, -0.05)] + _arc(0.0, 0.4, 0.45, 0.48, 250.0, 510.0),),
    ([(0.3, -0.92), (-0.2, -0.4), (-0.43, 0.3)], _arc(0.0, 0.45, 0.43, 0.45, 180.0, 540.0, 14)),
    ([(-0.45, -0.9), (0.45, -0.9), (-0.1, 0.92)],),  # segment 0 is the top bar (see seven_bar)
    (_arc(0.0, -0.5, 0.36, 0.4, 0.0, 360.0, 14), _arc(0.0, 0.43, 0.45, 0.49, 0.0, 360.0, 14)),
    (_arc(0.0, -0.42, 0.42, 0.45, 0.0, 360.0, 14), [(0.42, -0.42), (0.25, 0.92)]),
)


def _segments(polylines) -> np.ndarray:
    return np.array([(*a, *b) for line in polylines for a, b in zip(line[:-1], line[1:])], np.float32)


_SEGMENTS = [_segments(p) for p in _POLYLINES]
_MAX_SEGMENTS = max(len(s) for s in _SEGMENTS)
# (classes, max segments, 4): shorter glyphs repeat their last segment, which leaves the minimum distance unchanged
_STROKES = np.stack([np.concatenate([s, np.repeat(s[-1:], _MAX_SEGMENTS - len(s), 0)]) for s in _SEGMENTS])
_SEVEN = CLASSES.index("seven")
_SEVEN_BAR_RIGHT, _SEVEN_BAR_WIDTH = 0.45, 0.9
_CUT_DISTANCE = 0.45  # centre of the erased disc from the glyph centre, as a share of the glyph's half-height

_NOMINAL = {
    "x": (-0.1, 0.1),
    "y": (-0.1, 0.1),
    "scale": (0.6, 0.78),  # glyph half-height as a share of the half image
    "aspect": (0.8, 1.2),
    "slant": (-0.25, 0.25),  # horizontal shear per unit of height; > 0 leans right
    "rotation": (-8.0, 8.0),  # degrees
    "thickness": (0.12, 0.2),  # stroke width as a share of the half image (1.9 to 3.2 px at 32 px)
    "jitter": (0.0, 0.05),  # amplitude of the smooth stroke wobble, in glyph units
    "seven_bar": (0.85, 1.0),  # length of the 7's top bar, share of the full bar
    "cut": (0.0, 0.06),  # radius of the erased disc, share of the glyph's half-height
    "cut_angle": (0.0, 360.0),
    "paper": (0.0, 0.15),
    "contrast": (0.6, 0.9),
    "noise": (0.01, 0.04),
    "speckle": (0.0, 0.01),  # share of pixels set to black or white
}
_HAZARD_RANGES = {
    "thin": ("thickness", (0.006, 0.016)),
    "slant": ("slant", (0.75, 0.95)),
    "cut": ("cut", (0.45, 0.6)),
    "speckle": ("speckle", (0.4, 0.55)),
    "low_contrast": ("contrast", (0.07, 0.12)),
    "short_bar": ("seven_bar", (0.12, 0.32)),
}


def sample_parameters(n: int, hazard_rate: float, rng: np.random.Generator) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Draw ``n`` glyphs' parameters; a share ``hazard_rate`` carries one hazard each (``short_bar`` only on sevens).

    Returns the parameters (one float array of shape (n,) per name in :data:`PARAMETERS`) and the
    cause of each image (``"none"`` or a name in :data:`HAZARDS`).
    """
    return sample_with_causes(_NOMINAL, _HAZARD_RANGES, PARAMETERS, len(CLASSES), n, hazard_rate, rng, _slant_sign_and_sevens)


def _slant_sign_and_sevens(hazard: str, rows: np.ndarray, params: dict[str, np.ndarray], rng: np.random.Generator) -> None:
    """A slant leans either way; the short bar is specific to sevens (they read as ones)."""
    if hazard == "slant":
        params["slant"][rows] *= rng.choice([-1.0, 1.0], len(rows))
    elif hazard == "short_bar":
        params["class_id"][rows] = _SEVEN


def labels(params: dict[str, np.ndarray]) -> np.ndarray:
    """Class name of each image."""
    return np.array(CLASSES, dtype=object)[params["class_id"].astype(np.int64)]


def _place(params: dict[str, np.ndarray], gx: np.ndarray, gy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Glyph-box points ``(B, S)`` -> image coordinates: aspect and slant, rotation, scale, position."""
    c = {k: np.asarray(v, np.float32)[:, None] for k, v in params.items()}
    sx = gx * c["aspect"] - c["slant"] * gy
    theta = np.radians(c["rotation"])
    cos, sin = np.cos(theta), np.sin(theta)
    return c["x"] + c["scale"] * (cos * sx - sin * gy), c["y"] + c["scale"] * (sin * sx + cos * gy)


def render(params: dict[str, np.ndarray], size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Render ``B`` glyphs: uint8 images ``(B, size, size)`` and bool masks ``(B, size, size)`` (the strokes).

    ``rng`` supplies the wobble phases, the sensor noise and the specks; everything else follows ``params``.
    """
    b = len(params["class_id"])
    x, y, pix = grid(size)
    cls = params["class_id"].astype(np.int64)
    seg = _STROKES[cls].copy()  # (B, S, 4): ax, ay, bx, by in the glyph box
    sevens = cls == _SEVEN
    seg[sevens, 0, 0] = _SEVEN_BAR_RIGHT - _SEVEN_BAR_WIDTH * params["seven_bar"][sevens]

    phases = rng.uniform(0.0, 2.0 * np.pi, (b, 2)).astype(np.float32)
    jitter = np.asarray(params["jitter"], np.float32)[:, None]
    ends = []
    for gx, gy in ((seg[..., 0], seg[..., 1]), (seg[..., 2], seg[..., 3])):
        wx = gx + jitter * np.sin(2.5 * gy + 4.0 * gx + phases[:, :1])
        wy = gy + jitter * np.sin(3.0 * gx + 2.0 * gy + phases[:, 1:])
        ends.append(_place(params, wx, wy))
    (ax, ay), (bx, by) = ends

    dist = None
    for s in range(_MAX_SEGMENTS):
        d = segment_distance(x, y, col(ax[:, s]), col(ay[:, s]), col(bx[:, s]), col(by[:, s]))
        dist = d if dist is None else np.minimum(dist, d)
    p = {k: col(v) for k, v in params.items()}
    phi = np.radians(p["cut_angle"])
    cut_x = p["x"] + _CUT_DISTANCE * p["scale"] * np.cos(phi)
    cut_y = p["y"] + _CUT_DISTANCE * p["scale"] * np.sin(phi)
    erased = cover(p["cut"] * p["scale"] - np.sqrt((x - cut_x) ** 2 + (y - cut_y) ** 2), pix)
    ink = cover(p["thickness"] / 2.0 - dist, pix) * (1.0 - erased)

    image = p["paper"] + p["contrast"] * ink
    image = image + rng.standard_normal(image.shape, dtype=np.float32) * p["noise"]
    specks = rng.random(image.shape, dtype=np.float32)
    salt = rng.random(image.shape, dtype=np.float32) < 0.5
    image = np.where(specks < p["speckle"], salt.astype(np.float32), image)
    masks = (dist <= np.maximum(p["thickness"] / 2.0, pix / 2.0)) & (erased < 0.5)
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8), masks
