"""Interpretable properties of an image, for describing clusters of real data where no simulator
parameter exists: brightness, contrast, sharpness, noise, colour saturation, dominant hue and,
when the data set has foreground masks, the foreground's size.

Each is a number an engineer can check by eye, computed on the 8-bit image as stored:

- ``brightness``: mean luminance in [0, 1];
- ``contrast``: standard deviation of luminance;
- ``sharpness``: variance of the 4-neighbour Laplacian of luminance (low: blurred);
- ``noise``: Immerkaer's estimate of the standard deviation of Gaussian noise (a 3x3 mask that
  cancels smooth image structure, "Fast noise variance estimation", 1996);
- ``saturation``: mean HSV saturation (0 for grayscale images);
- ``hue``: circular mean of the hue of the saturated pixels, in degrees (NaN for grayscale);
- ``foreground``: share of the image the mask marks as foreground.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.ndimage import convolve

from ..case.data import Case, mask_path, read_image
from ..core.progress import progress

__all__ = ["image_properties", "properties_table", "PROPERTIES"]

PROPERTIES = ("brightness", "contrast", "sharpness", "noise", "saturation", "hue", "foreground")
_LAPLACIAN = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=np.float64)
_NOISE = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float64)
_SATURATED = 0.2


def image_properties(image: np.ndarray) -> dict[str, float]:
    """The properties (bar ``foreground``) of one uint8 ``(H, W, C)`` image."""
    rgb = image.astype(np.float64)[:, :, :3] / 255.0
    gray = rgb[:, :, 0] if rgb.shape[2] == 1 else rgb @ np.array([0.299, 0.587, 0.114])
    height, width = gray.shape
    inner = max(1, (height - 2) * (width - 2))
    noise = np.sqrt(np.pi / 2) * np.abs(convolve(gray, _NOISE, mode="reflect")[1:-1, 1:-1]).sum() / (6 * inner)
    found = {"brightness": gray.mean(), "contrast": gray.std(), "sharpness": convolve(gray, _LAPLACIAN, mode="reflect").var(),
             "noise": noise, "saturation": 0.0, "hue": np.nan}
    if rgb.shape[2] == 3:
        high, low = rgb.max(axis=2), rgb.min(axis=2)
        saturation = np.where(high > 0, (high - low) / np.maximum(high, 1e-12), 0.0)
        found["saturation"] = saturation.mean()
        coloured = saturation > _SATURATED
        if coloured.any():
            found["hue"] = _mean_hue(rgb[coloured], high[coloured], high[coloured] - low[coloured])
    return {key: float(value) for key, value in found.items()}


def _mean_hue(pixels: np.ndarray, high: np.ndarray, spread: np.ndarray) -> float:
    """Circular mean hue (degrees, [0, 360)) of RGB ``pixels`` ``(n, 3)`` with their max and max - min."""
    r, g, b = pixels.T
    hue = np.where(high == r, (g - b) / spread % 6, np.where(high == g, (b - r) / spread + 2, (r - g) / spread + 4)) * 60.0
    angle = np.deg2rad(hue)
    return float(np.rad2deg(np.arctan2(np.sin(angle).mean(), np.cos(angle).mean())) % 360)


def properties_table(case: Case, images: list[str]) -> pd.DataFrame:
    """The properties of ``images`` (ids relative to ``DataSets/``), one row each, indexed by image.

    ``foreground`` is present only when every image has a mask; a column that is NaN for every
    image (``hue`` of a grayscale set) is dropped.
    """
    rows = []
    masks = [mask_path(case, image) for image in images]
    with_masks = bool(images) and all(path.is_file() for path in masks)
    for image, mask in zip(progress(images, desc="properties", unit="image"), masks):
        row = image_properties(read_image(case.datasets / image))
        if with_masks:
            row["foreground"] = float((read_image(mask) > 127).mean())
        rows.append(row)
    table = pd.DataFrame(rows, index=pd.Index(images, name="image"))
    return table.dropna(axis=1, how="all").round(6)
