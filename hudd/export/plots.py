"""Plots written as PNG with matplotlib's Agg backend and no timestamp, so the same data gives the same bytes."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..core.files import atomic_path  # noqa: E402

__all__ = ["figure_png", "save_figure", "plot_wicd"]


def figure_png(fig) -> bytes:
    """``fig`` as PNG bytes without metadata (the figure stays open, to be drawn again)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    return buffer.getvalue()


def save_figure(fig, path: Path) -> None:
    """Atomically save ``fig`` as PNG without metadata, then close it."""
    with atomic_path(Path(path)) as tmp:
        tmp.write_bytes(figure_png(fig))
    plt.close(fig)


def plot_wicd(path: Path, ks: np.ndarray, wicd: np.ndarray, slope: np.ndarray, chosen_k: int, *, title: str) -> None:
    """WICD against k with its derivative, the chosen k marked in red."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.4, 5.6), sharex=True)
    top.plot(ks, wicd, color="tab:blue", marker="." if len(ks) < 60 else None)
    bottom.plot(ks, slope, color="tab:gray")
    if chosen_k in set(ks.tolist()):
        i = int(np.flatnonzero(ks == chosen_k)[0])
        top.plot([chosen_k], [wicd[i]], "o", color="red", label=f"k = {chosen_k}")
        bottom.plot([chosen_k], [slope[i]], "o", color="red")
        top.legend()
    top.set_ylabel("WICD")
    bottom.set_ylabel("dWICD/dk (4th-order)")
    bottom.set_xlabel("number of clusters k")
    top.set_title(title)
    fig.tight_layout()
    save_figure(fig, path)
