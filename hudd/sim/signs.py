"""The ``signs`` family: procedural traffic-sign-like RGB images with injected hazards.

Eight classes (:data:`CLASSES`), each a distinct combination of shape, colours and a simple inner
symbol (:data:`_DESIGNS`), drawn on a two-colour gradient background with a few random blobs
("clutter"; at hazard levels also other signs around it, some in front). Nominal images vary
position, scale, rotation, brightness, hue, background, blur and sensor noise within ranges that
keep the task easy (:data:`_NOMINAL`); an image with a hazard has one parameter pushed outside its
range, so each hazard is one root cause of failure:

- ``occlusion``, ``blur``, ``dark``, ``small`` and ``clutter`` hit every class and make the model
  err into several classes;
- ``colour`` is specific to one class: a ``stop`` sign (red octagon, white bar) with its hue
  turned towards blue looks like ``mandatory`` (blue circle, white bar), its nearest class.

Coordinates are normalised to [-1, 1] over the image (x right, y down); the sign's own coordinates
(``u``, ``v``) are these, centred on the sign, rotated by ``rotation`` and divided by ``scale``.
The foreground mask is the visible sign: its outline minus the occluder and the signs in front of it.
"""

from __future__ import annotations

import numpy as np

from .evidence import Evidence
from .draw import col, cover, gaussian_blur, grid, hsv_to_rgb, polygon_inside, rotate_hue, sample_with_causes

__all__ = ["CLASSES", "PARAMETERS", "HAZARDS", "EVIDENCE", "sample_parameters", "labels", "render"]

CLASSES = ("stop", "mandatory", "yield", "warning", "speed", "parking", "priority", "info")
PARAMETERS = (
    "class_id", "x", "y", "scale", "rotation", "brightness", "hue_shift", "blur", "noise", "clutter",
    "occlusion", "occlusion_angle", "occluder_tone", "bg_hue_angle", "bg_saturation", "bg_level", "bg_gradient",
)
HAZARDS = {
    "occlusion": "a grey-green patch covers about half of the sign",
    "blur": "strong defocus blur",
    "dark": "very low brightness",
    "small": "the sign is far away: a fraction of its usual size",
    "colour": "a stop sign with its red turned towards blue (class-specific: looks like 'mandatory')",
    "clutter": "a busy background: opaque sign-coloured blobs and other signs crowding the sign",
}
EVIDENCE = {
    "occlusion": Evidence("occlusion", "high"),
    "blur": Evidence("blur", "high", "sharpness", "low"),
    "dark": Evidence("brightness", "low", "brightness", "low"),
    "small": Evidence("scale", "low", "foreground", "low"),
    "colour": Evidence("hue_shift", "outside", "hue", "any"),
    "clutter": Evidence("clutter", "high"),
}

_RED, _BLUE, _YELLOW = (0.80, 0.10, 0.12), (0.10, 0.25, 0.75), (0.95, 0.78, 0.10)
_WHITE, _BLACK, _GREEN, _BROWN = (0.95, 0.95, 0.95), (0.08, 0.08, 0.08), (0.10, 0.55, 0.25), (0.55, 0.3, 0.12)
_PALETTE = np.array([_RED, _BLUE, _YELLOW, _WHITE, _BLACK, _GREEN, _BROWN, (0.5, 0.5, 0.5)], np.float32)
# edge normals (degrees, y down) and apothem of each outline, in the sign's units; None = a circle of radius 1
_SHAPES = {
    "circle": (None, 1.0),
    "octagon": (22.5 + 45.0 * np.arange(8), 0.93),
    "triangle_up": ((90.0, 210.0, 330.0), 0.6),
    "triangle_down": ((270.0, 30.0, 150.0), 0.6),
    "square": ((0.0, 90.0, 180.0, 270.0), 0.8),
    "diamond": ((45.0, 135.0, 225.0, 315.0), 0.8),
}
_NO_BAR = (0.0, 0.0, 0.0, 0.0)
# per class: outline, border colour, border width (sign units), fill colour, symbol colour,
# two symbol rectangles (centre u, centre v, half width, half height)
_DESIGNS = (
    ("octagon", _WHITE, 0.07, _RED, _WHITE, ((0.0, 0.0, 0.6, 0.14), _NO_BAR)),
    ("circle", _WHITE, 0.07, _BLUE, _WHITE, ((0.0, 0.0, 0.6, 0.14), _NO_BAR)),
    ("triangle_down", _RED, 0.22, _WHITE, _BLACK, (_NO_BAR, _NO_BAR)),
    ("triangle_up", _RED, 0.2, _WHITE, _BLACK, ((0.0, -0.05, 0.08, 0.25), _NO_BAR)),
    ("circle", _RED, 0.2, _WHITE, _BLACK, ((-0.2, 0.0, 0.08, 0.35), (0.2, 0.0, 0.08, 0.35))),
    ("square", _WHITE, 0.07, _BROWN, _WHITE, ((-0.12, 0.0, 0.1, 0.4), (0.08, -0.22, 0.15, 0.1))),
    ("diamond", _WHITE, 0.14, _YELLOW, _WHITE, (_NO_BAR, _NO_BAR)),
    ("square", _WHITE, 0.07, _GREEN, _WHITE, ((0.0, 0.0, 0.5, 0.1), (0.0, 0.0, 0.1, 0.5))),
)
_BORDER_COLOURS = np.array([d[1] for d in _DESIGNS], np.float32)
_BORDER_WIDTHS = np.array([d[2] for d in _DESIGNS], np.float32)
_FILL_COLOURS = np.array([d[3] for d in _DESIGNS], np.float32)
_SYMBOL_COLOURS = np.array([d[4] for d in _DESIGNS], np.float32)
_SYMBOLS = np.array([d[5] for d in _DESIGNS], np.float32)  # (classes, 2, 4)
_STOP = CLASSES.index("stop")
_CLUTTER_BLOBS = 24
_DISTRACTORS = 4  # other signs in a cluttered image: the first two behind the sign, the others in front
_DISTRACTORS_BEHIND = 2
_OCCLUDER_DISTANCE = 0.65  # occluder centre from the sign centre, in sign units

_NOMINAL = {
    "x": (-0.15, 0.15),
    "y": (-0.15, 0.15),
    "scale": (0.5, 0.7),  # sign radius as a share of the half image
    "rotation": (-10.0, 10.0),  # degrees
    "brightness": (0.75, 1.15),
    "hue_shift": (-12.0, 12.0),  # degrees about the grey axis, applied to the sign's colours
    "blur": (0.0, 0.015),  # Gaussian sigma as a share of the half image (0.48 px at 64 px)
    "noise": (0.01, 0.03),
    "clutter": (0.0, 0.12),  # 0 = plain background, 1 = all blobs opaque; other signs from 0.125
    "occlusion": (0.0, 0.3),  # occluder radius in sign units
    "occlusion_angle": (0.0, 360.0),
    "occluder_tone": (0.25, 0.6),
    "bg_hue_angle": (0.0, 360.0),
    "bg_saturation": (0.05, 0.25),
    "bg_level": (0.35, 0.75),
    "bg_gradient": (-0.25, 0.25),
}
_HAZARD_RANGES = {
    "occlusion": ("occlusion", (1.05, 1.3)),
    "blur": ("blur", (0.15, 0.3)),
    "dark": ("brightness", (0.09, 0.17)),
    "small": ("scale", (0.18, 0.24)),
    "colour": ("hue_shift", (225.0, 258.0)),
    "clutter": ("clutter", (0.85, 1.0)),
}


def sample_parameters(n: int, hazard_rate: float, rng: np.random.Generator) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Draw ``n`` signs' parameters; a share ``hazard_rate`` carries one hazard each (``colour`` only on stop signs).

    Returns the parameters (one float array of shape (n,) per name in :data:`PARAMETERS`) and the
    cause of each image (``"none"`` or a name in :data:`HAZARDS`).
    """
    return sample_with_causes(_NOMINAL, _HAZARD_RANGES, PARAMETERS, len(CLASSES), n, hazard_rate, rng, _stop_only_colour)


def _stop_only_colour(hazard: str, rows: np.ndarray, params: dict[str, np.ndarray], rng: np.random.Generator) -> None:
    """The colour shift is specific to stop signs (they turn blue and read as mandatory)."""
    if hazard == "colour":
        params["class_id"][rows] = _STOP


def labels(params: dict[str, np.ndarray]) -> np.ndarray:
    """Class name of each image."""
    return np.array(CLASSES, dtype=object)[params["class_id"].astype(np.int64)]


def _outline_inside(kind: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Signed distance inside each image's outline (sign units); ``kind`` is the outline name per image."""
    inside = np.empty_like(u)
    for name, (normals, apothem) in _SHAPES.items():
        idx = np.flatnonzero(kind == name)
        if len(idx) == 0:
            continue
        if normals is None:
            inside[idx] = apothem - np.sqrt(u[idx] ** 2 + v[idx] ** 2)
        else:
            inside[idx] = polygon_inside(u[idx], v[idx], normals, apothem)
    return inside


def _clutter(background: np.ndarray, clutter: np.ndarray, x: np.ndarray, y: np.ndarray, pix: np.float32, rng: np.random.Generator) -> np.ndarray:
    """Paint up to :data:`_CLUTTER_BLOBS` discs and squares in palette colours; blob ``k`` has opacity
    ``clip(clutter * K - k, 0, 1)``. The random draws do not depend on the parameters."""
    b = len(clutter)
    centres = rng.uniform(-1.0, 1.0, (_CLUTTER_BLOBS, 2, b)).astype(np.float32)
    radii = rng.uniform(0.08, 0.4, (_CLUTTER_BLOBS, b)).astype(np.float32)
    square = rng.random((_CLUTTER_BLOBS, b)) < 0.5
    colours = _PALETTE[rng.integers(0, len(_PALETTE), (_CLUTTER_BLOBS, b))]
    background = background.copy()
    for k in range(_CLUTTER_BLOBS):
        opacity = np.clip(clutter * _CLUTTER_BLOBS - k, 0.0, 1.0)
        idx = np.flatnonzero(opacity > 0)  # only the images that show blob k
        dx, dy = np.abs(x - col(centres[k, 0, idx])), np.abs(y - col(centres[k, 1, idx]))
        dist = np.where(col(square[k, idx]), np.maximum(dx, dy), np.sqrt(dx * dx + dy * dy))
        alpha = cover(col(radii[k, idx]) - dist, pix) * col(opacity[idx])
        background[idx] += alpha[..., None] * (colours[k, idx][:, None, None, :] - background[idx])
    return background


def _paint_sign(image: np.ndarray, cls: np.ndarray, hue_shift: np.ndarray, cx, cy, scale, rotation, x, y, pix) -> tuple[np.ndarray, np.ndarray]:
    """Paint one sign per image (class ``cls``, centre, scale, rotation as ``(B, 1, 1)`` columns) over
    ``image`` ``(B, H, W, 3)``; returns the new image and the coverage of the sign's outline."""
    theta = np.radians(rotation)
    cos, sin = np.cos(theta), np.sin(theta)
    dx, dy = x - cx, y - cy
    u = (dx * cos + dy * sin) / scale
    v = (-dx * sin + dy * cos) / scale
    kind = np.array([_DESIGNS[c][0] for c in range(len(CLASSES))], dtype=object)[cls]
    inside = _outline_inside(kind, u, v)
    outer = cover(inside * scale, pix)
    inner = cover((inside - col(_BORDER_WIDTHS[cls])) * scale, pix)
    symbol = np.zeros_like(inner)
    for r in range(_SYMBOLS.shape[1]):
        cu, cv, hw, hh = (col(_SYMBOLS[cls, r, i]) for i in range(4))
        rect = np.minimum(hw - np.abs(u - cu), hh - np.abs(v - cv))
        symbol = np.maximum(symbol, cover(rect * scale, pix) * (hw > 0))
    symbol = symbol * inner
    border_c, fill_c, symbol_c = (rotate_hue(c[cls], hue_shift)[:, None, None, :] for c in (_BORDER_COLOURS, _FILL_COLOURS, _SYMBOL_COLOURS))
    image = image + outer[..., None] * (border_c - image)
    image = image + inner[..., None] * (fill_c - image)
    image = image + symbol[..., None] * (symbol_c - image)
    return image, outer


def _distractors(params: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Classes, centres, scales and rotations ``(K, B)`` of the :data:`_DISTRACTORS` other signs a cluttered
    image may show around its sign (those in front a little farther out, so they hide only its edge).
    The random draws do not depend on the parameters."""
    k, b = _DISTRACTORS, len(params["clutter"])
    classes = rng.integers(0, len(CLASSES), (k, b))
    angles = rng.uniform(0.0, 2.0 * np.pi, (k, b))
    distances = (rng.uniform(0.85, 1.2, (k, b)) + 0.1 * (np.arange(k) >= _DISTRACTORS_BEHIND)[:, None]) * params["scale"]
    return {
        "class": classes, "x": params["x"] + distances * np.cos(angles), "y": params["y"] + distances * np.sin(angles),
        "scale": rng.uniform(0.75, 1.0, (k, b)) * params["scale"], "rotation": rng.uniform(-10.0, 10.0, (k, b)),
    }


def _paint_distractors(image: np.ndarray, clutter: np.ndarray, others: dict[str, np.ndarray], which: range, x, y, pix
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Paint distractors ``which`` of :func:`_distractors`; distractor ``k`` shows when ``clutter * K >= k + 0.5``
    (none in nominal images). Returns the new image and the distractors' joint coverage."""
    image = image.copy()
    covered = np.zeros(image.shape[:3], np.float32)
    for k in which:
        idx = np.flatnonzero(clutter * _DISTRACTORS >= k + 0.5)
        place = (col(others[name][k, idx]) for name in ("x", "y", "scale", "rotation"))
        image[idx], outer = _paint_sign(image[idx], others["class"][k, idx], np.zeros(len(idx)), *place, x, y, pix)
        covered[idx] = np.maximum(covered[idx], outer)
    return image, covered


def render(params: dict[str, np.ndarray], size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Render ``B`` signs: uint8 images ``(B, size, size, 3)`` and bool masks ``(B, size, size)`` (the visible sign).

    ``rng`` supplies the clutter blobs and distractor signs and the sensor noise; everything else
    follows ``params``.
    """
    b = len(params["class_id"])
    x, y, pix = grid(size)
    p = {k: col(v) for k, v in params.items()}
    cls = params["class_id"].astype(np.int64)

    top = hsv_to_rgb(params["bg_hue_angle"], params["bg_saturation"], np.clip(params["bg_level"] * (1.0 + params["bg_gradient"]), 0.0, 1.0))
    bottom = hsv_to_rgb(params["bg_hue_angle"], params["bg_saturation"], np.clip(params["bg_level"] * (1.0 - params["bg_gradient"]), 0.0, 1.0))
    t = ((y + 1.0) / 2.0)[..., None]  # (1, size, 1, 1)
    image = top[:, None, None, :] * (1.0 - t) + bottom[:, None, None, :] * t
    image = np.broadcast_to(image, (b, size, size, 3)).astype(np.float32)
    image = _clutter(image, params["clutter"], x, y, pix, rng)
    others = _distractors(params, rng)
    image = _paint_distractors(image, params["clutter"], others, range(_DISTRACTORS_BEHIND), x, y, pix)[0]
    image, outer = _paint_sign(image, cls, params["hue_shift"], p["x"], p["y"], p["scale"], p["rotation"], x, y, pix)
    image, in_front = _paint_distractors(image, params["clutter"], others, range(_DISTRACTORS_BEHIND, _DISTRACTORS), x, y, pix)

    phi = np.radians(p["occlusion_angle"])
    ox = p["x"] + _OCCLUDER_DISTANCE * p["scale"] * np.cos(phi)
    oy = p["y"] + _OCCLUDER_DISTANCE * p["scale"] * np.sin(phi)
    occluder = cover(p["occlusion"] * p["scale"] - np.sqrt((x - ox) ** 2 + (y - oy) ** 2), pix)
    occluder_c = (params["occluder_tone"][:, None] * np.array([0.85, 1.0, 0.8]))[:, None, None, :].astype(np.float32)
    image = image + occluder[..., None] * (occluder_c - image)

    image = gaussian_blur(image, params["blur"] * size / 2.0)
    image = image * p["brightness"][..., None]
    image = image + rng.standard_normal(image.shape, dtype=np.float32) * p["noise"][..., None]
    masks = (outer >= 0.5) & (occluder < 0.5) & (in_front < 0.5)
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8), masks
