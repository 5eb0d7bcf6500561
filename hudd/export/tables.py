"""XLSX views of tables (never the source: the CSV/NPY files are)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from openpyxl import Workbook

from ..core.files import atomic_path

__all__ = ["write_distance_sheet", "EXCEL_MAX_COLUMNS"]

EXCEL_MAX_COLUMNS = 16384


def write_distance_sheet(path: Path, distances: np.ndarray, names: list[str]) -> None:
    """Write an ``(n, n)`` distance matrix as a sheet with image names on the first row and column.

    Streams rows (openpyxl write-only mode). ``n + 1`` must fit Excel's 16,384 columns.
    """
    if len(names) + 1 > EXCEL_MAX_COLUMNS:
        raise ValueError(f"{len(names)} images do not fit Excel's {EXCEL_MAX_COLUMNS} columns")
    book = Workbook(write_only=True)
    sheet = book.create_sheet("distances")
    sheet.append([""] + list(names))
    for name, row in zip(names, distances):
        sheet.append([name] + [float(v) for v in row])
    with atomic_path(Path(path)) as tmp:
        book.save(tmp)
