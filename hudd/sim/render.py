"""Vectorised procedural eye renderer (UnityEyes-like, 2-D): a batch of parameters -> uint8 images.

Coordinates are normalised to [-1, 1] over the pixel centres (x right, y down). The eye is an
almond between two parabolic lids whose opening follows ``openness``; head yaw and pitch move
and foreshorten it; the iris (with limbus ring and pupil) is displaced along the gaze direction
and hidden where the lids cover it. Then lash line, lid crease and eyebrow, a directional light,
a global brightness and Gaussian sensor noise. Edges are anti-aliased over one pixel, so small
parameter changes give small image changes.
"""

from __future__ import annotations

import numpy as np

__all__ = ["render_eyes", "eye_masks", "eye_keypoints", "KEYPOINT_NAMES", "KEYPOINT_GROUPS"]

_UPPER_T = np.linspace(-1.0, 1.0, 7)
_LOWER_T = np.linspace(-2.0 / 3.0, 2.0 / 3.0, 5)
KEYPOINT_NAMES = tuple([f"upper_lid_{i}" for i in range(7)] + [f"lower_lid_{i}" for i in range(5)] + ["iris_centre"])
KEYPOINT_GROUPS = {"upper_lid": list(range(7)), "lower_lid": list(range(7, 12)), "iris": [12]}


def _col(values: np.ndarray) -> np.ndarray:
    """(B,) -> (B, 1, 1) float32 for broadcasting against (B, H, W)."""
    return np.asarray(values, dtype=np.float32)[:, None, None]


def _geometry(p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Eye geometry in normalised units, each entry of shape (B,)."""
    yaw = np.radians(p["head_yaw"])
    pitch = np.radians(p["head_pitch"])
    theta = np.radians(p["gaze_angle"])
    mag = p["gaze_magnitude"]
    sx, sy = np.cos(yaw), np.cos(pitch)
    looking_up = np.clip(np.sin(theta), 0.0, None) * mag
    looking_down = np.clip(-np.sin(theta), 0.0, None) * mag
    return {
        "cx": 0.55 * np.sin(yaw),
        "cy": -0.45 * np.sin(pitch),
        "a": 0.72 * sx,
        "hu": (0.40 * p["openness"] + 0.10 * looking_up * p["openness"]) * sy,
        "hl": (0.26 * p["openness"] + 0.06 * looking_down * p["openness"]) * sy,
        "ix": 0.55 * np.sin(yaw) + mag * 0.42 * sx * np.cos(theta),
        "iy": -0.45 * np.sin(pitch) - mag * 0.26 * sy * np.sin(theta),
        "sx": sx,
        "sy": sy,
    }


def _lids(g: dict[str, np.ndarray], t: np.ndarray, upper: bool) -> np.ndarray:
    """Lid height at normalised positions ``t`` in [-1, 1] along the eye (broadcast with g's entries)."""
    profile = np.clip(1.0 - t * t, 0.0, None) ** 0.8
    return g["cy"] - g["hu"] * profile - 0.02 if upper else g["cy"] + g["hl"] * profile


def _grid(size: int) -> tuple[np.ndarray, np.ndarray, np.float32]:
    """Pixel-centre coordinates ``x`` (1, 1, size) and ``y`` (1, size, 1) in [-1, 1], and one pixel's width."""
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size * 2.0 - 1.0
    return coords[None, None, :], coords[None, :, None], np.float32(2.0 / size)


def _cover(signed_inside: np.ndarray, pix: np.float32) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] of a region given its signed distance inside (normalised units)."""
    return np.clip(signed_inside / pix + 0.5, 0.0, 1.0)


def _eye_opening(g: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray, pix: np.float32) -> tuple[np.ndarray, ...]:
    """Position along the eye ``t``, upper lid height, and the coverage of the opening between the lids."""
    t = (x - g["cx"]) / g["a"]
    y_up = _lids(g, t, upper=True)
    y_low = _lids(g, t, upper=False)
    inside_x = np.abs(t) < 1.0
    return t, y_up, _cover(np.minimum(y - y_up, y_low - y), pix) * inside_x


def eye_masks(params: dict[str, np.ndarray], size: int) -> np.ndarray:
    """Foreground masks of the eyes :func:`render_eyes` draws: the opening between the lids (sclera, iris
    and pupil as far as visible), where its anti-aliased coverage is at least one half.

    Deterministic (no noise), so the masks line up with the images pixel for pixel.

    Returns
    -------
    ndarray of bool, shape (B, size, size)
    """
    g = {k: _col(v) for k, v in _geometry(params).items()}
    x, y, pix = _grid(size)
    return _eye_opening(g, x, y, pix)[2] >= 0.5


def render_eyes(params: dict[str, np.ndarray], size: int, rng: np.random.Generator) -> np.ndarray:
    """Render ``B`` grayscale eye images.

    Parameters
    ----------
    params : dict of str to ndarray of shape (B,)
        The simulator parameters (see :data:`hudd.sim.params.PARAMETERS`).
    size : int
        Image side in pixels.
    rng : numpy.random.Generator
        Source of the sensor noise.

    Returns
    -------
    ndarray of uint8, shape (B, size, size)
    """
    g = {k: _col(v) for k, v in _geometry(params).items()}
    p = {k: _col(v) for k, v in params.items()}
    x, y, pix = _grid(size)

    def cover(signed_inside: np.ndarray) -> np.ndarray:
        return _cover(signed_inside, pix)

    t, y_up, eye = _eye_opening(g, x, y, pix)

    r_iris = p["iris_size"] * g["sy"]
    q_iris = np.sqrt(((x - g["ix"]) / (r_iris * np.maximum(g["sx"], 0.3))) ** 2 + ((y - g["iy"]) / r_iris) ** 2)
    iris = cover((1.0 - q_iris) * r_iris)
    pupil = cover((p["pupil_size"] - q_iris) * r_iris)
    limbus = np.clip((q_iris - 0.8) / 0.2, 0.0, 1.0)

    sclera_tone = 0.9 * (1.0 - 0.25 * t * t)
    iris_tone = p["iris_tone"] * (1.0 - 0.45 * limbus)
    inner = sclera_tone * (1.0 - iris) + iris_tone * iris
    inner = inner * (1.0 - pupil) + 0.04 * pupil

    skin = p["skin_tone"] * (1.0 - 0.08 * y)
    lash = np.exp(-(((y - y_up + 0.02) / 0.04) ** 2)) * (np.abs(t) < 1.05)
    crease = np.exp(-(((y - (y_up - 0.2 * g["sy"])) / 0.04) ** 2)) * (np.abs(t) < 0.9)
    brow_t = (x - g["cx"]) / (1.1 * g["a"])
    brow = np.exp(-(((y - (g["cy"] - 0.72 * g["sy"] - 0.08 * (1 - brow_t * brow_t))) / 0.07) ** 2)) * np.clip(1.0 - brow_t * brow_t, 0.0, 1.0)
    skin = skin * (1.0 - 0.55 * brow) * (1.0 - 0.18 * crease)

    img = skin * (1.0 - eye) + inner * eye
    img = img * (1.0 - 0.7 * lash)

    phi = np.radians(p["light_angle"])
    light = 1.0 + p["light_strength"] * (x * np.cos(phi) - y * np.sin(phi))
    img = img * light * p["brightness"]
    img = img + rng.standard_normal(img.shape, dtype=np.float32) * p["noise"]
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)


def eye_keypoints(params: dict[str, np.ndarray], size: int) -> np.ndarray:
    """Landmarks of each eye in pixel coordinates: ``(B, 13, 2)`` as ``(x, y)``, names in :data:`KEYPOINT_NAMES`.

    Seven points along the upper lid (corner to corner), five along the lower lid, and the iris centre.
    """
    g = _geometry(params)
    gc = {k: v[:, None] for k, v in g.items()}
    up_x = gc["cx"] + _UPPER_T[None, :] * gc["a"]
    up_y = _lids(gc, _UPPER_T[None, :], upper=True)
    low_x = gc["cx"] + _LOWER_T[None, :] * gc["a"]
    low_y = _lids(gc, _LOWER_T[None, :], upper=False)
    xs = np.concatenate([up_x, low_x, gc["ix"]], axis=1)
    ys = np.concatenate([up_y, low_y, gc["iy"]], axis=1)
    to_px = lambda v: (v + 1.0) / 2.0 * size - 0.5  # noqa: E731
    return np.stack([to_px(xs), to_px(ys)], axis=-1).astype(np.float32)
