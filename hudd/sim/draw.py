"""Helpers the sign and glyph families share: hazard assignment and vectorised drawing primitives.

Every primitive works on a whole batch at once: per-image values are ``(B, 1, 1)`` columns (see
:func:`col`) broadcast against the pixel grid of :func:`hudd.sim.render._grid` (x right, y down,
both in [-1, 1]), and signed distances are turned into anti-aliased coverage by
:func:`hudd.sim.render._cover`, as in the eye renderer.
"""

from __future__ import annotations

import numpy as np

from .render import _col as col
from .render import _cover as cover
from .render import _grid as grid

__all__ = ["assign_causes", "sample_with_causes", "col", "cover", "grid", "polygon_inside", "segment_distance", "gaussian_blur", "rotate_hue", "hsv_to_rgb"]


def assign_causes(hazards: tuple[str, ...], n: int, hazard_rate: float, rng: np.random.Generator) -> np.ndarray:
    """The cause of each of ``n`` images: ``round(hazard_rate * n)`` random ones get one hazard each, the
    hazards taken in turn (so they are equally frequent), the rest ``"none"``; the eye families' scheme."""
    n_hazard = int(round(hazard_rate * n))
    causes = np.array(["none"] * n, dtype=object)
    chosen = rng.permutation(n)[:n_hazard]
    causes[chosen] = np.array(hazards, dtype=object)[np.arange(n_hazard) % len(hazards)]
    return causes


def sample_with_causes(nominal: dict, hazard_ranges: dict, parameters: tuple[str, ...], n_classes: int, n: int,
                       hazard_rate: float, rng: np.random.Generator, adjust=None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Draw ``n`` images' parameters uniformly in their ``nominal`` ranges and a ``class_id``; a share
    ``hazard_rate`` gets one hazard each (:func:`assign_causes`), whose parameter is redrawn in its
    ``hazard_ranges`` entry (``hazard -> (parameter, (low, high))``). ``adjust(hazard, rows, params, rng)``
    adds what a hazard needs beyond its range (a sign flip, a class it is specific to).

    Returns the parameters (one float array of shape (n,) per name in ``parameters``, in that order)
    and the cause of each image (``"none"`` or a hazard).
    """
    params = {name: rng.uniform(lo, hi, n) for name, (lo, hi) in nominal.items()}
    params["class_id"] = rng.integers(0, n_classes, n).astype(np.float64)
    causes = assign_causes(tuple(hazard_ranges), n, hazard_rate, rng)
    for hazard, (name, (lo, hi)) in hazard_ranges.items():
        rows = np.flatnonzero(causes == hazard)
        params[name][rows] = rng.uniform(lo, hi, len(rows))
        if adjust is not None:
            adjust(hazard, rows, params, rng)
    return {name: params[name] for name in parameters}, causes.astype(str)


def polygon_inside(u: np.ndarray, v: np.ndarray, normals_deg, apothem: float) -> np.ndarray:
    """Signed distance inside a convex polygon centred at the origin: its edges lie ``apothem`` away along
    ``normals_deg`` (degrees, y down). Exact inside and near the edges, which is all coverage needs."""
    angles = np.radians(np.asarray(normals_deg, dtype=np.float64))
    reach = None
    for a in angles:
        d = u * np.float32(np.cos(a)) + v * np.float32(np.sin(a))
        reach = d if reach is None else np.maximum(reach, d)
    return apothem - reach


def segment_distance(x: np.ndarray, y: np.ndarray, ax, ay, bx, by) -> np.ndarray:
    """Distance from pixel centres to the segments ``a -> b`` (one per image, ``(B, 1, 1)`` endpoints)."""
    dx, dy = bx - ax, by - ay
    t = np.clip(((x - ax) * dx + (y - ay) * dy) / np.maximum(dx * dx + dy * dy, np.float32(1e-12)), 0.0, 1.0)
    return np.sqrt((x - ax - t * dx) ** 2 + (y - ay - t * dy) ** 2)


def gaussian_blur(images: np.ndarray, sigma_px: np.ndarray) -> np.ndarray:
    """Blur ``(B, H, W, C)`` float images with one Gaussian of ``sigma_px`` pixels per image.

    Separable, as two batched matrix products with a per-image ``(H, H)`` kernel matrix whose rows
    are renormalised at the border (no dark rim). A sigma near 0 gives the identity.
    """
    size = images.shape[1]
    idx = np.arange(size, dtype=np.float32)
    s = np.maximum(np.asarray(sigma_px, dtype=np.float32), np.float32(0.05))[:, None, None]
    kernel = np.exp(-((idx[None, :, None] - idx[None, None, :]) ** 2) / (2.0 * s * s))
    kernel /= kernel.sum(axis=2, keepdims=True)
    channels = np.moveaxis(images, 3, 1)  # (B, C, H, W)
    out = kernel[:, None] @ channels @ np.swapaxes(kernel, 1, 2)[:, None]
    return np.moveaxis(out, 1, 3).astype(np.float32)


def rotate_hue(rgb: np.ndarray, degrees: np.ndarray) -> np.ndarray:
    """Rotate ``(B, 3)`` colours about the grey axis by ``degrees`` per image (a hue shift that keeps
    greys and the mean level: red rotated by 240 degrees becomes blue)."""
    theta = np.radians(np.asarray(degrees, dtype=np.float64))
    c, s = np.cos(theta)[:, None, None], np.sin(theta)[:, None, None]
    k = np.full((3, 3), 1.0 / 3.0)
    cross = np.array([[0.0, -1.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]]) / np.sqrt(3.0)
    rot = c * np.eye(3) + s * cross + (1.0 - c) * k
    return np.clip(np.einsum("bij,bj->bi", rot, rgb), 0.0, 1.0).astype(np.float32)


def hsv_to_rgb(hue_deg: np.ndarray, saturation: np.ndarray, value: np.ndarray) -> np.ndarray:
    """``(B, 3)`` RGB in [0, 1] of per-image hue (degrees), saturation and value."""
    h = (np.asarray(hue_deg, dtype=np.float64) % 360.0)[:, None] / 60.0
    k = (np.array([5.0, 3.0, 1.0])[None, :] + h) % 6.0
    rgb = np.asarray(value)[:, None] * (1.0 - np.asarray(saturation)[:, None] * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0))
    return rgb.astype(np.float32)
