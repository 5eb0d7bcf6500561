"""Writing an evaluation script's own section of ``docs/evaluation.md``, between markers.

Each script owns the text between ``<!-- <name>: begin -->`` and ``<!-- <name>: end -->`` and
rewrites only that, so several scripts (and people) can write the same page. A section starts
with the command that made it, the machine and the commit, so a figure can be traced and redone.
"""

from __future__ import annotations

import datetime as _dt
import platform
import subprocess
import sys
from pathlib import Path

import pandas as pd

DOCS = Path(__file__).resolve().parents[1] / "docs" / "evaluation.md"


def markdown_table(frame: pd.DataFrame, digits: int = 2) -> str:
    """``frame`` as a GitHub markdown table, floats with ``digits`` decimals."""
    def cell(value) -> str:
        if isinstance(value, float):
            return "" if pd.isna(value) else f"{value:.{digits}f}"
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def provenance(argv: list[str]) -> str:
    """One line: the command, the date, the commit and the machine."""
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    command = " ".join([f"scripts/{Path(sys.argv[0]).name}", *argv])
    return (f"`{command}` on {_dt.date.today().isoformat()}, commit {commit}, {platform.machine()} "
            f"{platform.system()} with {_cpu_count()} CPU cores.")


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def write_section(name: str, text: str, path: Path = DOCS) -> Path:
    """Replace the section ``name`` of ``path`` with ``text`` (added at the end when the page has none)."""
    begin, end = f"<!-- {name}: begin -->", f"<!-- {name}: end -->"
    block = f"{begin}\n{text.strip()}\n{end}"
    page = path.read_text(encoding="utf-8") if path.is_file() else "# Evaluation\n"
    if begin in page and end in page:
        head, rest = page.split(begin, 1)
        page = head + block + rest.split(end, 1)[1]
    else:
        page = page.rstrip("\n") + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
