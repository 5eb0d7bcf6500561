"""The linear space a feature-based clustering was made in, saved so that new images can be placed in it.

A clustering of error-inducing images by feature vectors (black-box, pretrained, naive) measures
distances after standardising every feature (and, for the black-box pipeline, after PCA). To
assign improvement-set images to those clusters (``hudd assign``), their features must go
through the *same* map, fitted on the error images: :class:`FeatureSpace` is that map, a mean and
scale per feature and an optional projection, stored as one ``space.npz`` beside the clusters.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.decomposition import PCA

from ..core.errors import HuddError
from ..core.files import save_npz

__all__ = ["FeatureSpace"]


@dataclass
class FeatureSpace:
    """``z = (x - mean) / scale``, then ``(z - center) @ components.T`` when ``components`` has rows.

    ``mean``, ``scale`` ``(d,)`` (a constant feature has scale 1, so it maps to 0); ``center``
    ``(d,)`` and ``components`` ``(m, d)`` the fitted PCA (``m == 0``: no projection).
    """

    mean: np.ndarray
    scale: np.ndarray
    center: np.ndarray
    components: np.ndarray

    @classmethod
    def fit(cls, features: np.ndarray, *, n_components: int = 0, seed: int = 0, blocks: tuple[int, ...] = ()) -> "FeatureSpace":
        """Standardisation of ``features`` ``(n, d)``, then PCA to ``n_components`` (0: none; capped at ``n - 1`` and ``d``).

        ``blocks``: the widths of feature blocks side by side (two or more, summing to ``d``) to weigh
        equally: each block's standardised features are divided by the square root of its number of
        varying features, so every block adds the same variance to the distances whatever its width.
        """
        x = np.asarray(features, dtype=np.float64)
        mean = x.mean(axis=0)
        scale = x.std(axis=0)
        varying = scale > 0
        scale[~varying] = 1.0
        if len(blocks) > 1:
            if sum(blocks) != x.shape[1]:
                raise ValueError(f"blocks {blocks} do not add up to the {x.shape[1]} features")
            for start, width in zip(np.cumsum((0, *blocks[:-1])), blocks):
                scale[start:start + width] *= np.sqrt(max(1, int(varying[start:start + width].sum())))
        d = x.shape[1]
        z = (x - mean) / scale
        m = min(n_components, len(x) - 1, d)
        if m <= 0 or not z.any():
            return cls(mean, scale, np.zeros(d), np.zeros((0, d)))
        pca = PCA(n_components=m, random_state=seed).fit(z)
        return cls(mean, scale, pca.mean_, pca.components_)

    @property
    def dimensions(self) -> int:
        """Dimensions of the space (``m``, or ``d`` without projection)."""
        return len(self.components) if len(self.components) else len(self.mean)

    def transform(self, features: np.ndarray) -> np.ndarray:
        """``(n, d)`` raw features -> ``(n, dimensions)`` float64 in this space."""
        z = (np.asarray(features, dtype=np.float64) - self.mean) / self.scale
        return (z - self.center) @ self.components.T if len(self.components) else z

    def head(self, m: int) -> "FeatureSpace":
        """The same space keeping only its first ``m`` principal components (no-op without projection)."""
        return FeatureSpace(self.mean, self.scale, self.center, self.components[:m]) if len(self.components) else self

    def save(self, path: Path) -> None:
        """Write ``path`` (``.npz``) atomically."""
        save_npz(path, mean=self.mean, scale=self.scale, center=self.center, components=self.components)

    @classmethod
    def load(cls, path: Path) -> "FeatureSpace":
        """Read ``path`` written by :meth:`save`; a damaged file is a HuddError naming it."""
        fix = "rerun the clustering that wrote it with --force"
        try:
            with np.load(path, allow_pickle=False) as data:
                mean, scale, center, components = (np.asarray(data[key], dtype=np.float64) for key in ("mean", "scale", "center", "components"))
        except (OSError, ValueError, EOFError, KeyError, TypeError) as exc:
            if isinstance(exc, OSError) and exc.errno is not None:
                raise
            raise HuddError(f"{path}: not a readable feature space ({exc or type(exc).__name__}); {fix}") from None
        d = len(mean)
        if not (mean.shape == scale.shape == center.shape == (d,) and components.ndim == 2 and components.shape[1] == d):
            raise HuddError(f"{path}: arrays of inconsistent shapes; {fix}")
        if not all(np.isfinite(a).all() for a in (mean, scale, center, components)) or not (scale > 0).all():
            raise HuddError(f"{path}: holds NaN, infinite or zero scale values; {fix}")
        return cls(mean, scale, center, components)
