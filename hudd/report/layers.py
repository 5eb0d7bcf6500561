"""The report's layer section: heatmap layers, the per-layer clustering summary and WICD curves, the selected layer."""

from __future__ import annotations

from ..cluster.naming import unit_name
from .html import esc, image, note, not_run, section, table
from .inputs import ReportInputs

__all__ = ["layers_section"]

_COLUMNS = ["layer", "alias", "n", "k", "wicd", "knee_method", "selected"]
_HEADERS = {"n": "images", "wicd": "WICD", "knee_method": "knee method"}


def _figure(data: ReportInputs, group: str, row) -> str:
    unit = unit_name(group, row.layer)
    cls = "plot selected" if row.selected else "plot"
    caption = f"{row.layer} ({row.alias}): k = {int(row.k)}" + (f", WICD {row.wicd:.4f} \u2013 selected" if row.selected else "")
    return (f'<figure class="{cls}">{image(data.workspace.wicd_png(unit), f"WICD curve of {unit}")}'
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def _group(data: ReportInputs, group: str, rows) -> str:
    """The summary table beside the selected layer's WICD curve, then the other layers' curves."""
    parts = []
    chosen = rows[rows["selected"]]
    for row in chosen.itertuples():
        parts.append(f'<p class="headline">{esc(group + ": ") if group else ""}selected layer <b>{esc(row.layer)}</b> '
                     f"({esc(row.alias)}): k = {int(row.k)} root-cause clusters of {int(row.n):,} images, WICD {row.wicd:.4f}</p>")
        if "why" in rows:
            parts.append(note(f"Why: {row.why}."))
    summary = table(rows[_COLUMNS], headers=_HEADERS, highlight=rows["selected"].tolist())
    parts.append('<div class="grid"><div>' + summary + "</div>" + "".join(_figure(data, group, r) for r in chosen.itertuples()) + "</div>")
    others = [_figure(data, group, r) for r in rows[~rows["selected"]].itertuples()]
    if others:
        parts.append('<details class="curves" open><summary>WICD curves of the other layers</summary><div class="grid small">'
                     + "\n".join(others) + "</div></details>")
    return "\n".join(parts)


def layers_section(data: ReportInputs) -> str:
    """Per layer (and face element) n, k, WICD, knee method; the selected layer highlighted; the WICD curves."""
    title = "Layers"
    if data.summary is None:
        body = []
        if data.layers is not None:
            body.append(table(data.layers, headers={"N": "heatmap rows", "M": "heatmap columns"}))
        body.append(not_run(data.first_missing("test", "heatmaps", "cluster")))
        return section("layers", title, "\n".join(body))
    summary = data.summary
    body = [note("Per layer, the error-inducing images are clustered by their heatmaps (Ward linkage); k is the knee of "
                 "the WICD curve (within-cluster distance), and the layer with the lowest WICD at its k is selected.")]
    groups = list(dict.fromkeys(summary["group"].astype(str)))
    if data.layers is not None and "left_out" in data.layers:
        left = data.layers[[isinstance(why, str) and why != "" for why in data.layers["left_out"]]]
        if len(left):
            body.append(note(f"Left out of the clustering ({len(left)} layers): "
                             + "; ".join(f"{row.layer} ({row.left_out})" for row in left.itertuples()) + "."))
    for group in groups:
        rows = summary[summary["group"].astype(str) == group]
        if group:
            body.append(f"<h3>Face element {esc(group)}</h3>")
        body.append(_group(data, group, rows))
    return section("layers", title, "\n".join(body))
