"""The labels an engineer types into ``UnsafeSet/labels.csv``, and their history.

Labels typed by a person are the most expensive data in a workspace. Before ``hudd assign``
writes a new ``labels.csv``, every label typed into the current one (a value that is not blank
and differs from what hudd pre-filled) is appended to ``labels-history.csv`` (image, column,
value, recorded), which hudd only ever appends to; the new ``labels.csv`` takes the latest typed
label of each image it lists, so no sequence of reruns loses one.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..core.files import write_csv
from ..workspace.readers import read_table
from ..workspace.workspace import Workspace, utc_now

__all__ = ["read_labels", "record_typed_labels", "typed_labels", "LABELS_FIX"]

_HISTORY = ["image", "column", "value", "recorded"]
LABELS_FIX = "correct it in a spreadsheet, keeping the columns hudd wrote, and save it as CSV (UTF-8)"


def read_labels(path: Path, *, fix: str) -> pd.DataFrame:
    """``labels.csv`` as strings (blank cells empty), checked: UTF-8, an ``image`` column, at least one row."""
    return read_table(path, {"image": "str"}, fix=fix, written=False, dtype=str, keep_default_na=False)


def _history(ws: Workspace) -> pd.DataFrame:
    if not ws.labels_history.is_file():
        return pd.DataFrame(columns=_HISTORY)
    return read_table(ws.labels_history, dict.fromkeys(_HISTORY, "str"), allow_empty=True, dtype=str, keep_default_na=False,
                      fix="restore it from a backup (hudd only appends to it)")


def typed_labels(ws: Workspace, history: pd.DataFrame | None = None) -> pd.DataFrame:
    """The latest typed value of every (image, column) in the history (read when not given): a table indexed by image."""
    history = _history(ws) if history is None else history
    if history.empty:
        return pd.DataFrame()
    latest = history.drop_duplicates(["image", "column"], keep="last")
    return latest.pivot(index="image", columns="column", values="value").fillna("")


def record_typed_labels(ws: Workspace, prefilled: pd.DataFrame | None) -> None:
    """Append to the history the labels typed into the current ``labels.csv`` that it does not hold yet.

    ``prefilled``: what hudd wrote into those cells (indexed by image), so only what a person
    changed counts as typed; None when unknown (every non-blank label counts).
    """
    if not ws.labels_csv.is_file():
        return
    labels = read_labels(ws.labels_csv, fix=LABELS_FIX)
    history = _history(ws)
    known = typed_labels(ws, history)
    rows = []
    for column in labels.columns.drop(["image", "cluster"], errors="ignore"):
        for image, value in zip(labels["image"], labels[column].str.strip()):
            before = prefilled.at[image, column] if prefilled is not None and image in prefilled.index and column in prefilled else ""
            latest = known.at[image, column] if image in known.index and column in known else ""
            if value and value != latest and (latest or value != str(before).strip()):
                rows.append((image, column, value))
    if rows:
        added = pd.DataFrame([(*row, utc_now()) for row in rows], columns=_HISTORY)
        write_csv(ws.labels_history, added if history.empty else pd.concat([history, added], ignore_index=True))
