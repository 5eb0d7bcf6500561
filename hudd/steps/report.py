"""``hudd report``: write ``HUDD/report.html``, the self-contained HTML report of the workspace.

Not a fingerprinted step: it reads only files, is cheap, and is regenerated every time, after
any step (sections whose inputs are missing say which command to run). See :mod:`hudd.report`.
"""

from __future__ import annotations

from pathlib import Path

from ..report import write_report
from .common import Context

__all__ = ["run"]


def run(ctx: Context) -> Path:
    """Write ``ctx.workspace.report_html`` atomically and return its path."""
    return write_report(ctx)
