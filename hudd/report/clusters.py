"""The report's root-cause clusters: one card per cluster (its sentence, class mix, GIF, contact sheet,
parameter distributions, unsafe-set thumbnails) for the findings at the top, and further down a
section with how they were made, an overview table and the scores against the simulator's
parameters and causes."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from ..cluster.naming import unit_name
from .figures import ParameterFigure
from .html import esc, image, link, linked_image, note, not_run, section, table
from .inputs import ReportInputs
from ..cluster.clustering import cluster_order
from ..methods import HUDD, PAPER
from .scores import Scores, score_clusters
from .unsafe import thumbnails, unsafe_table

__all__ = ["cluster_cards", "clusters_section", "face_element"]

_MIX_SHOWN = 3
_MIX_ROWS = 8


def face_element(cluster: str) -> str:
    """``upper_lid-C3`` -> ``upper_lid``; ``C3`` -> ``""``."""
    return cluster.rsplit("-C", 1)[0] if "-C" in cluster else ""


def _mix(data: ReportInputs, images: pd.Series) -> pd.DataFrame:
    """Class mix of a cluster's images: label, prediction, images (keypoints: worst keypoint, images, mean error)."""
    test = data.test.set_index("image").reindex(images)
    if data.spec.task == "classification":
        counts = test.groupby(["label", "prediction"]).size().rename("images").reset_index()
        return counts.sort_values(["images", "label", "prediction"], ascending=[False, True, True], kind="stable")
    names = test["worst_keypoint"].map(lambda k: data.spec.keypoints[int(k)] if 0 <= int(k) < len(data.spec.keypoints) else str(k))
    grouped = test.assign(keypoint=names).groupby("keypoint")
    counts = pd.DataFrame({"images": grouped.size(), "mean error (px)": grouped["error_px"].mean()}).reset_index()
    return counts.sort_values(["images", "keypoint"], ascending=[False, True], kind="stable").rename(columns={"keypoint": "worst keypoint"})


def _top(mix: pd.DataFrame) -> pd.DataFrame:
    """The first rows of a class mix, the rest summed into one ``other`` row."""
    if len(mix) <= _MIX_ROWS + 1:
        return mix
    rest = mix.iloc[_MIX_ROWS:]
    other = {c: "" for c in mix.columns}
    other[mix.columns[0]] = f"{len(rest)} other"
    other["images"] = int(rest["images"].sum())
    return pd.concat([mix.head(_MIX_ROWS), pd.DataFrame([other])], ignore_index=True)[mix.columns]


def _mix_text(mix: pd.DataFrame) -> str:
    if "label" in mix.columns:
        parts = [f"{r.label} \u2192 {r.prediction}: {r.images}" for r in mix.head(_MIX_SHOWN).itertuples()]
    else:
        parts = [f"{r[0]}: {r[1]}" for r in mix.head(_MIX_SHOWN).itertuples(index=False)]
    return ", ".join(parts) + (", ..." if len(mix) > _MIX_SHOWN else "")


def _rr_style(column: str, value) -> str:
    """Cells of RR columns shaded from white (RR <= 0) to green (RR = 1)."""
    if not column.startswith("RR ") or not isinstance(value, float) or math.isnan(value):
        return ""
    t = min(max(value, 0.0), 1.0)
    r, g, b = (round(255 + (c - 255) * t * 0.85) for c in (47, 158, 68))
    return f"background-color: rgb({r},{g},{b})"


def _scores(data: ReportInputs) -> tuple[Scores | None, str]:
    if data.params is None:
        return None, ""
    try:
        return score_clusters(data.clusters, data.params), ""
    except KeyError as exc:
        return None, f"DataSets/TestSet/params.csv has no row for {exc.args[0]}, an image of the clusters; its parameters are not compared"


def _card(data: ReportInputs, name: str, images: pd.Series, layer: str, alias: str, scores: Scores | None, exported: bool,
          figure: ParameterFigure | None, sentence: str) -> str:
    ws = data.workspace
    unit = unit_name(face_element(name), layer)
    anchor = f"cluster-{name}"
    parts = [f'<section class="cluster" id="{esc(anchor)}">',
             f"<h3>{esc(name)}: {len(images):,} images \u00b7 {'layer' if data.method.get('name', PAPER) == PAPER else 'method'} "
             f"{esc(layer)} ({esc(alias)})</h3>"]
    facts = [f'<p class="sentence">{esc(sentence[len(name):].lstrip(" "))}</p>'] if sentence else []
    if scores is not None:
        row = scores.table.set_index("cluster").loc[name]
        if scores.evaluation is not None:
            causes = [(c[2:], int(row[c])) for c in scores.table.columns if c.startswith("n_") and int(row[c]) > 0]
            causes.sort(key=lambda item: (-item[1], item[0]))
            facts.append(f"<p>Dominant cause <b>{esc(row['dominant_cause'])}</b>, purity {row['purity']:.2f} "
                         f"(causes: {esc(', '.join(f'{c} {n}' for c, n in causes))})</p>")
        rr = sorted(((v, p) for p, v in scores.rr(name).items() if not math.isnan(v)), key=lambda item: (-item[0], item[1]))
        if rr:
            facts.append("<p>Highest RR: " + esc(", ".join(f"{p} {v:.2f}" for v, p in rr[:3])) + "</p>")
    if facts:
        parts.append("\n".join(facts))
    row_parts = []
    if data.test is not None:
        row_parts.append("<div>" + table(_top(_mix(data, images)), floats="{:.2f}") + "</div>")
    if exported:
        folder = link(data.relative(ws.cluster_images_dir(unit, name)) + "/", f"ClusterAnalysis/{unit}/{name}/")
        gif, sheet = ws.cluster_gif(unit, name), ws.cluster_sheet(unit, name)
        row_parts.append(f'<figure class="gif">{linked_image(gif, data.relative(gif), f"{name} animation", css_class="gif")}'
                         f"<figcaption>GIF of up to 100 images; all in {folder}</figcaption></figure>"
                         f'<figure>{linked_image(sheet, data.relative(sheet), f"{name} contact sheet", css_class="sheet")}'
                         "<figcaption>contact sheet</figcaption></figure>")
    parts.append('<div class="cluster-row">' + "\n".join(row_parts) + "</div>")
    if figure is not None:
        members = data.params.set_index("image").loc[images].reset_index()
        png = figure.png(f"{name}: {len(images):,} images (orange) against all {len(data.params):,} test images (grey)",
                         members, scores.rr(name))
        parts.append(image(png, f"{name} simulator parameters", css_class="params"))
    parts.append(thumbnails(data, name))
    parts.append("</section>")
    return "\n".join(p for p in parts if p)


def _how(data: ReportInputs, names: list[str], layer_of: dict, alias: dict) -> str:
    """How the clusters were made, and why that representation, layer and k: one phrase for the headline
    (from ``summary.csv``'s or ``method.csv``'s ``representation`` and ``why`` columns)."""
    method = data.method.get("name", PAPER)
    default = " (the default method)" if data.method.get("requested") == HUDD else ""
    if method == PAPER or data.method_row is None:
        units = list(dict.fromkeys(f"{layer_of[n]} ({alias.get((face_element(n), layer_of[n]), '?')})" for n in names))
        chosen = data.summary[data.summary["selected"]] if data.summary is not None and "why" in data.summary else None
        why = "; ".join(chosen["why"]) if chosen is not None and len(chosen) else "the layer of minimal WICD; k at the knee of its WICD curve"
        return f"method paper{default}: LRP heatmaps of layer {', '.join(units)}; {why}"
    row = data.method_row.iloc[0]
    if "representation" in row:
        return f"method {method}{default}: {row['representation']} ({row['features']} dimensions); {row['why']}"
    return f"method {method}{default}: {row['extractor']} features ({row['layer']}, {row['features']} dimensions), k = {row['k']}"


def heatmap_view(data: ReportInputs, clusters: pd.DataFrame) -> str:
    """Where in the model: how each of the active method's clusters spreads over the paper's heatmap clusters."""
    paper = data.paper_clusters
    if paper is None or data.method.get("name", PAPER) == PAPER:
        return ""
    merged = clusters[["image", "cluster"]].merge(paper[["image", "cluster", "layer"]], on="image", suffixes=("", "_paper"))
    if merged.empty:
        return ""
    counts = pd.crosstab(merged["cluster"], merged["cluster_paper"])
    counts = counts.reindex(index=sorted(counts.index, key=cluster_order), columns=sorted(counts.columns, key=cluster_order))
    layers = ", ".join(sorted(merged["layer"].unique()))
    frame = counts.reset_index().rename(columns={"cluster": "cluster \\ heatmap cluster"})
    return "\n".join([
        "<h3>Where in the model: the paper's heatmap clusters</h3>",
        note(f"Rows: these clusters (what the images have in common); columns: the clusters of the paper's method (LRP heatmaps "
             f"of layer {layers}: which part of the model's reasoning they share); cells: images in both. A row spread over "
             "several columns is one visible cause the model gets wrong in several ways."),
        table(frame, floats="{:.0f}")])


@dataclass
class _Clusters:
    """The active method's clusters as the cards and the section read them."""

    names: list
    members: dict
    layer_of: dict
    alias: dict
    scores: Scores | None
    problem: str
    exported: bool
    method: str


def _prepared(data: ReportInputs) -> _Clusters:
    clusters = data.clusters
    names = sorted(clusters["cluster"].unique(), key=cluster_order)
    alias = {}
    if data.summary is not None:
        alias = {(str(r.group), r.layer): r.alias for r in data.summary.itertuples()}
    method = data.method.get("name", PAPER)
    if method != PAPER and data.method_row is not None:
        row = data.method_row.iloc[0]
        alias[("", method)] = f"{row['extractor']} {row['layer']}"
    scores, problem = _scores(data)
    return _Clusters(names=names, members={name: clusters.loc[clusters["cluster"] == name, "image"] for name in names},
                     layer_of=dict(zip(clusters["cluster"], clusters["layer"])), alias=alias, scores=scores, problem=problem,
                     exported=bool(data.step("export" if method == PAPER else method).get("done")), method=method)


def cluster_cards(data: ReportInputs) -> str:
    """One card per root-cause cluster of the active method, largest first (empty before clustering)."""
    if data.clusters is None:
        return ""
    found = _prepared(data)
    sentences = dict(zip(data.findings["cluster"], data.findings["sentence"])) if data.findings is not None else {}
    order = sorted(found.names, key=lambda n: (-len(found.members[n]), cluster_order(n)))
    scores = found.scores
    figure = ParameterFigure(data.params, scores.parameters) if scores is not None and scores.parameters else None
    cards = []
    try:
        for name in order:
            layer = found.layer_of[name]
            cards.append(_card(data, name, found.members[name], layer, found.alias.get((face_element(name), layer), "?"), scores,
                               found.exported, figure, sentences.get(name, "")))
    finally:
        if figure is not None:
            figure.close()
    return "\n".join(cards)


def clusters_section(data: ReportInputs) -> str:
    """How the clusters were made, an overview table and the scores against the simulator's causes and parameters."""
    title = "Root-cause clusters"
    if data.clusters is None:
        return section("clusters", title, not_run(data.first_missing("test", "heatmaps", "cluster")))
    clusters = data.clusters
    found = _prepared(data)
    names, members, layer_of, alias, scores, problem, exported, method = (
        found.names, found.members, found.layer_of, found.alias, found.scores, found.problem, found.exported, found.method)
    body = [f'<p class="headline"><b>{len(clusters):,}</b> error-inducing images in <b>{len(names)}</b> root-cause clusters '
            f"({esc(_how(data, names, layer_of, alias))}).</p>"]
    if data.method.get("note"):
        body.append(note(data.method["note"]))
    if not exported:
        body.append(not_run(data.command("export"), "images not exported yet"))
    if problem:
        body.append(note(problem))

    overview = pd.DataFrame({"cluster": [link(f"#cluster-{n}", n) for n in names],
                             "layer" if method == PAPER else "method": [layer_of[n] for n in names],
                             "size": [len(members[n]) for n in names]})
    if data.test is not None:
        overview["class mix" if data.spec.task == "classification" else "worst keypoints"] = \
            [_mix_text(_mix(data, members[n])) for n in names]
    if scores is not None and scores.evaluation is not None:
        table_by_name = scores.table.set_index("cluster")
        overview["dominant cause"] = [table_by_name.loc[n, "dominant_cause"] for n in names]
        overview["purity"] = [float(table_by_name.loc[n, "purity"]) for n in names]
    selected = unsafe_table(data)
    if selected is not None:
        overview["unsafe images"] = selected.set_index("cluster").reindex(names)["selected"].to_numpy()
    body.append(table(overview, floats="{:.2f}", html_columns=["cluster"]))

    if scores is not None:
        if scores.evaluation is not None:
            ev = scores.evaluation
            body.append("<h3>Clusters against the injected causes</h3>")
            body.append(f'<p class="headline">Purity <b>{ev.purity:.2f}</b>, coverage <b>{esc(ev.coverage)}</b> injected causes '
                        f"(found: {esc(', '.join(ev.covered) or 'none')}; injected: {esc(', '.join(ev.causes) or 'none')}), "
                        f"{len(ev.table)} clusters: <code>{esc(ev.line())}</code></p>")
            body.append(note("purity: share of the clustered images whose cluster's dominant cause is theirs; coverage: injected "
                             "causes that dominate a cluster of at least 3 images with purity at least 0.5"))
            counts = scores.table[["cluster", "size", "dominant_cause", "purity", *[c for c in scores.table.columns if c.startswith("n_")]]]
            body.append(table(counts.rename(columns=lambda c: c[2:] if c.startswith("n_") else c), floats="{:.2f}",
                              headers={"dominant_cause": "dominant cause"}))
        if scores.parameters:
            body.append("<h3>Simulator parameters: variance ratio RR</h3>")
            body.append(note("RR = 1 - var(cluster) / var(all test images) per parameter (circular variance for *_angle): near 1 "
                             "when the cluster's images agree on the parameter, so it characterises the cluster; near 0 or below "
                             "when they vary as much as the whole test set."))
            rr = scores.table[["cluster", "size", *[f"rr_{p}" for p in scores.parameters]]]
            rr = rr.rename(columns={f"rr_{p}": f"RR {p}" for p in scores.parameters})
            body.append(table(rr, floats="{:.2f}", style=_rr_style, headers={f"RR {p}": p for p in scores.parameters},
                              css_class="compact"))
    body.append(heatmap_view(data, clusters))
    return section("clusters", title, "\n".join(body))
