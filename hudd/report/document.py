"""The whole report page: header, navigation, and the sections in the order of the analysis."""

from __future__ import annotations

from pathlib import Path

from .. import __version__
from ..core.files import write_text
from .clusters import clusters_section
from .compare import comparison_section
from .findings import findings_section
from .html import code, esc, page
from .inputs import read_inputs
from .layers import layers_section
from .overview import data_section, model_section, steps_section, test_section
from .retrain import retrain_section
from .unsafe import unsafe_section

__all__ = ["build_report", "write_report"]

_NAV = (("findings", "Findings"), ("steps", "Steps"), ("model", "Model"), ("data", "Data"), ("test", "Test results"), ("layers", "Layers"),
        ("clusters", "Root-cause clusters"), ("unsafe", "Unsafe set"), ("retrain", "Retraining"))


def build_report(ctx, *, base: Path | None = None) -> str:
    """The report of ``ctx``'s workspace as one HTML string; relative links point from ``base``
    (default: the workspace, where ``report.html`` lives). Same files in, same bytes out."""
    data = read_inputs(ctx)
    data.base = Path(base) if base is not None else data.workspace.root
    header = [f"<h1>HUDD report: {esc(data.case.root.resolve().name)}</h1>",
              f'<p class="meta">case {code(str(data.case.root))} \u00b7 model {code(data.model_file)} \u00b7 '
              f"workspace {code(str(data.workspace.root))} \u00b7 hudd {esc(__version__)}</p>",
              "<nav>" + "".join(f'<a href="#{a}">{esc(t)}</a>' for a, t in _NAV) + "</nav>"]
    if data.problems:
        header.append('<p class="not-run">' + "<br>".join(esc(p) for p in data.problems) + "</p>")
    side_by_side = f'<div class="columns">{model_section(data)}\n{data_section(data)}</div>'
    sections = [findings_section(data), steps_section(data), side_by_side, test_section(data), layers_section(data),
                clusters_section(data), comparison_section(data), unsafe_section(data), retrain_section(data)]
    return page(f"HUDD report: {data.case.root.resolve().name}", "\n".join(header + sections))


def write_report(ctx, path: Path | None = None) -> Path:
    """Write the report atomically to ``path`` (default ``<workspace>/report.html``); return the path."""
    target = Path(path) if path is not None else ctx.workspace.report_html
    write_text(target, build_report(ctx, base=target.parent))
    return target
