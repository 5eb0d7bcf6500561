"""The report's comparison of clusterings: every clustering ``hudd evaluate --compare`` scored
(the paper's selected layer, each layer alone, every feature method), with purity, coverage and time."""

from __future__ import annotations

from .html import code, note, section, table
from .inputs import ReportInputs

__all__ = ["comparison_section"]


def comparison_section(data: ReportInputs) -> str:
    """One table: method, clusters, purity, coverage, time; empty when ``clusterings.csv`` is absent."""
    frame = data.clusterings
    if frame is None:
        return ""
    shown = frame[["method", "unit", "clusters", "images", "purity", "coverage", "noise", "in_small_clusters", "seconds"]]
    active = frame["active"] if "active" in frame.columns else frame["unit"] == "selected"
    body = [table(shown, floats="{:.2f}", highlight=active.astype(str).str.lower().eq("true").tolist(),
                  headers={"in_small_clusters": "in clusters < 3", "seconds": "time (s)"}),
            note("purity: images of their cluster's dominant injected cause / all; coverage: injected causes dominating "
                 "a cluster of >= 3 images at purity >= 0.5; noise: images a density-based clustering left unclustered; "
                 "time: the steps that made the clustering (heatmaps + cluster for the paper's), from the manifest; highlighted: "
                 "the active method, whose clusters the report shows"),
            note(f"written by {code(data.command('evaluate') + ' --compare')}")]
    return section("compare", "Clusterings compared", "\n".join(body))
