"""HTML building blocks of the report: escaping, number formatting, tables, inlined images, the page.

Every piece of text goes through :func:`esc` (``html.escape``), so names that come from a case
(class folders, image paths, layer names) can never inject markup. Images are inlined as base64
data URIs, so the page is one self-contained file; folders are linked relatively. No JavaScript.
"""

from __future__ import annotations

import base64
import math
from html import escape
from pathlib import Path
from typing import Callable, Iterable
from urllib.parse import quote

import numpy as np
import pandas as pd

__all__ = ["esc", "fmt", "table", "data_uri", "image", "link", "code", "not_run", "note", "section", "page"]

_MIME = {".png": "image/png", ".gif": "image/gif", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: #1d1d1f;
       max-width: 1200px; margin: 0 auto; padding: 16px 24px 48px; background: #fff; }
h1 { font-size: 24px; margin: 8px 0 4px; }
h2 { font-size: 19px; margin: 28px 0 8px; padding-bottom: 3px; border-bottom: 2px solid #2b6cb0; }
h3 { font-size: 16px; margin: 18px 0 6px; }
p { margin: 6px 0; }
.meta { color: #555; font-size: 13px; }
nav { font-size: 13px; margin: 6px 0 10px; }
nav a { margin-right: 12px; }
a { color: #2b6cb0; }
code { font: 12.5px "DejaVu Sans Mono", Menlo, Consolas, monospace; background: #f1f3f5; padding: 1px 4px; border-radius: 3px; }
table { border-collapse: collapse; margin: 6px 0 10px; font-size: 13px; }
th, td { border: 1px solid #d0d4d9; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #eef2f6; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.compact th, table.compact td { padding: 2px 5px; font-size: 12px; }
tr.selected td { background: #fff1b8; font-weight: 600; }
p.not-run { color: #8a4b00; background: #fff7e6; border-left: 4px solid #f0a020; padding: 4px 10px; }
p.note { color: #555; font-size: 13px; }
p.headline { font-size: 16px; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 6px 0; }
dl.facts dt { color: #555; }
dl.facts dd { margin: 0; }
.columns { display: flex; flex-wrap: wrap; gap: 0 48px; }
.columns > section { flex: 1 1 420px; }
.grid { display: flex; flex-wrap: wrap; gap: 10px 28px; align-items: flex-start; }
.grid.small { gap: 8px; }
.grid.small figure.plot { width: 222px; }
details.curves summary { cursor: pointer; color: #444; font-size: 13px; margin: 4px 0; }
figure { margin: 4px 0; }
figure.plot { width: 380px; }
figure.plot img { width: 100%; border: 1px solid #d0d4d9; }
figure.plot.selected img { border: 3px solid #e0a000; }
figcaption { font-size: 12px; color: #444; }
section.cluster { border: 1px solid #d0d4d9; border-radius: 6px; padding: 6px 14px 10px; margin: 14px 0; }
section.cluster h3 { margin-top: 6px; }
.cluster-row { display: flex; flex-wrap: wrap; gap: 18px; align-items: flex-start; }
figure.gif { width: 194px; }
figure.gif a { word-break: break-all; }
img.gif { width: 192px; image-rendering: pixelated; border: 1px solid #d0d4d9; }
img.sheet { max-width: 520px; width: 100%; border: 1px solid #d0d4d9; }
img.params { max-width: 100%; }
img.thumb { width: 64px; height: 64px; image-rendering: pixelated; border: 1px solid #d0d4d9; margin: 0 4px 4px 0; }
@media print {
  body { max-width: none; padding: 0; font-size: 11px; }
  section.cluster, figure, table { break-inside: avoid; }
  h2 { break-after: avoid; }
  a { color: inherit; text-decoration: none; }
}
"""


def esc(value) -> str:
    """``value`` as text, HTML-escaped (quotes too, so it is safe inside attributes)."""
    return escape(str(value), quote=True)


def fmt(value, floats: str = "{:.4f}") -> str:
    """A table cell's text: floats with ``floats`` (NaN as a dash), booleans as yes/blank."""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else ""
    if isinstance(value, (float, np.floating)):
        return "\u2013" if math.isnan(value) else floats.format(value)
    return str(value)


def _numeric(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def table(frame: pd.DataFrame, *, floats: str = "{:.4f}", highlight: Iterable[bool] | None = None, html_columns: Iterable[str] = (),
          style: Callable[[str, object], str] | None = None, headers: dict | None = None, right: Iterable[str] = (),
          css_class: str = "") -> str:
    """An HTML table of ``frame`` (no index).

    ``highlight``: rows to mark (class ``selected``); ``html_columns``: columns whose values are
    already HTML (links, images); ``style(column, value)``: an inline CSS for a cell, or ``""``;
    ``headers``: display names of columns (a header may wrap after ``_``); ``right``: text
    columns to align like numbers; ``css_class``: the table's class.
    """
    raw, aligned = set(html_columns), set(right)
    headers = headers or {}
    marks = list(highlight) if highlight is not None else [False] * len(frame)
    head = "".join(f"<th>{esc(headers.get(c, c)).replace('_', '_<wbr>')}</th>" for c in frame.columns)
    out = [f'<table class="{esc(css_class)}">' if css_class else "<table>", f"<tr>{head}</tr>"]
    for mark, row in zip(marks, frame.itertuples(index=False)):
        cells = []
        for column, value in zip(frame.columns, row):
            css = style(column, value) if style else ""
            attrs = (' class="num"' if _numeric(value) or column in aligned else "") + (f' style="{esc(css)}"' if css else "")
            text = str(value) if column in raw else esc(fmt(value, floats))
            cells.append(f"<td{attrs}>{text}</td>")
        out.append(("<tr class=\"selected\">" if mark else "<tr>") + "".join(cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def data_uri(data: bytes, mime: str) -> str:
    """``data:<mime>;base64,...``."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def image(source: Path | bytes, alt: str, *, css_class: str = "", mime: str = "image/png") -> str:
    """An ``<img>`` with the picture inlined; ``source`` is a file (a missing one gives a note) or PNG bytes."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            return note(f"missing: {path}")
        data, mime = path.read_bytes(), _MIME.get(path.suffix.lower(), "application/octet-stream")
    else:
        data = source
    cls = f' class="{esc(css_class)}"' if css_class else ""
    return f'<img{cls} alt="{esc(alt)}" src="{data_uri(data, mime)}">'


def linked_image(path: Path, href: str, alt: str, *, css_class: str = "") -> str:
    """An ``<img>`` that shows the file at ``path`` through ``href``, its path relative to the report (not inlined:
    GIFs and contact sheets stay beside the report in the workspace, so the report stays small); a missing
    file gives a note."""
    if not Path(path).is_file():
        return note(f"missing: {path}")
    cls = f' class="{esc(css_class)}"' if css_class else ""
    return f'<img{cls} alt="{esc(alt)}" loading="lazy" src="{esc(quote(href))}">'


def link(href: str, text: str) -> str:
    """A link to a relative path (percent-encoded, then escaped) or to an anchor in the page (``#name``)."""
    target = "#" + quote(href[1:]) if href.startswith("#") else quote(href)
    return f'<a href="{esc(target)}">{esc(text)}</a>'


def code(text: str) -> str:
    return f"<code>{esc(text)}</code>"


def not_run(command: str, what: str = "not run yet") -> str:
    """The line a section shows when its inputs do not exist yet: ``not run yet: run `hudd ...```."""
    return f'<p class="not-run">{esc(what)}: run {code(command)}</p>'


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{esc(anchor)}">\n<h2>{esc(title)}</h2>\n{body}\n</section>'


def page(title: str, body: str) -> str:
    """The whole document: doctype, UTF-8, the stylesheet, ``body``."""
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n")
