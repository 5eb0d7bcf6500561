"""Validated readers of the CSV tables and NumPy arrays hudd reads back from a workspace.

Each problem a file can have (missing, empty, truncated, not UTF-8, a column missing, a value of
the wrong type, an array of the wrong shape or with NaN) becomes one HuddError naming the file,
what is wrong and what to do, instead of a parser's traceback further on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from ..core.errors import HuddError

__all__ = ["read_table", "load_array", "check_images", "redo"]

_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


def redo(step: str) -> str:
    """What to do about a damaged output of ``step``."""
    return f"rerun `hudd {step} CASE --force` to write it again"


def _coerce(path: Path, table: pd.DataFrame, column: str, kind: str, fix: str) -> pd.Series:
    values = table[column]
    if kind in ("str", "text"):
        text = values.fillna("").astype(str)
        blank = np.flatnonzero((text.str.strip() == "").to_numpy()) if kind == "str" else []
        if len(blank):
            raise HuddError(f"{path}: row {blank[0] + 2}, column {column} is blank; {fix}")
        return text
    if kind == "bool":
        if values.dtype == bool:
            return values
        text = values.astype(str).str.strip().str.lower()
        bad = ~text.isin(_TRUE | _FALSE)
        parsed = text.isin(_TRUE)
    else:
        parsed = pd.to_numeric(values, errors="coerce")
        bad = parsed.isna() & values.notna() if kind == "float" else parsed.isna() | (parsed % 1 != 0)
        parsed = parsed.astype(np.int64) if kind == "int" and not bad.any() else parsed
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise HuddError(f"{path}: row {row + 2}, column {column} holds {values.iloc[row]!r}, not a {kind}; {fix}")
    return parsed


def read_table(path: Path, columns: Mapping[str, str] | tuple = (), *, fix: str, allow_empty: bool = False,
               written: bool = True, **kwargs) -> pd.DataFrame:
    """Read a UTF-8 CSV with pandas; ``columns`` must be present (a mapping also gives each column's type:
    ``str`` (not blank), ``text``, ``int``, ``float`` or ``bool``, coerced). ``fix`` says what to do when the
    file is bad. A file hudd wrote (``written``) must end with a line break, else it was cut short."""
    path = Path(path)
    if not path.is_file():
        raise HuddError(f"{path}: missing; {fix}")
    if written and not _ends_with_newline(path):
        raise HuddError(f"{path}: cut short (its last line is incomplete); {fix}")
    try:
        table = pd.read_csv(path, encoding="utf-8", **kwargs)
    except UnicodeDecodeError:
        raise HuddError(f"{path}: not UTF-8 text; save it as UTF-8 CSV, or {fix}") from None
    except pd.errors.EmptyDataError:
        raise HuddError(f"{path}: empty; {fix}") from None
    except (pd.errors.ParserError, ValueError) as exc:
        raise HuddError(f"{path}: not a readable CSV table ({str(exc).strip().splitlines()[0]}); {fix}") from None
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise HuddError(f"{path}: no column {', '.join(missing)}; {fix}")
    if table.empty and not allow_empty:
        raise HuddError(f"{path}: no rows; {fix}")
    if isinstance(columns, Mapping):
        for column, kind in columns.items():
            table[column] = _coerce(path, table, column, kind, fix)
    return table


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as fh:
        if fh.seek(0, 2) == 0:
            return True  # empty: reported as such by the parser
        fh.seek(-1, 2)
        return fh.read(1) == b"\n"


def load_array(path: Path, *, ndim: int | None = None, rows: int | None = None, finite: bool = False, fix: str,
               mmap: bool = False) -> np.ndarray:
    """Load a numeric ``.npy`` (memory-mapped when ``mmap``) and check it has ``ndim`` dimensions, ``rows`` rows
    and, with ``finite``, no NaN or infinity (checked in blocks of rows, so memory stays bounded)."""
    path = Path(path)
    if not path.is_file():
        raise HuddError(f"{path}: missing; {fix}")
    try:
        array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, EOFError, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:
            raise
        raise HuddError(f"{path}: not a readable NumPy array ({str(exc) or type(exc).__name__}); {fix}") from None
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "fiub":
        raise HuddError(f"{path}: holds {getattr(array, 'dtype', type(array).__name__)}, not numbers; {fix}")
    if ndim is not None and array.ndim != ndim:
        raise HuddError(f"{path}: has {array.ndim} dimensions {array.shape}, expected {ndim}; {fix}")
    if rows is not None and len(array) != rows:
        raise HuddError(f"{path}: has {len(array)} rows, expected {rows}; {fix}")
    if finite and not all(np.isfinite(array[start:start + 1024]).all() for start in range(0, len(array), 1024)):
        raise HuddError(f"{path}: holds NaN or infinite values; {fix}")
    return array


def check_images(path: Path, images, datasets: Path, fix: str) -> None:
    """Every image id in ``images`` (listed by the file ``path``) is a file under ``datasets``."""
    missing = [image for image in images if not (Path(datasets) / str(image)).is_file()]
    if missing:
        raise HuddError(f"{path}: lists {missing[0]}, which is missing from {datasets} ({len(missing)} such rows); {fix}")
