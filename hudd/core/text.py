"""A table as aligned plain text, for the terminal and the step logs."""

from __future__ import annotations

import pandas as pd

__all__ = ["format_table"]


def format_table(table: pd.DataFrame, *, floats: str = "{:.3f}") -> str:
    """Left-aligned text table with a header row; floats formatted with ``floats``."""
    cells = [[str(c) for c in table.columns]]
    for row in table.itertuples(index=False):
        cells.append([floats.format(v) if isinstance(v, float) else str(v) for v in row])
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in cells)
