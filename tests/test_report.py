"""HUDD/report.html: what it says at each stage, same bytes for the same workspace, escaping, and a
rendering in headless Chromium: the cluster cards on the first screen (skipped when no Chromium is installed, failed
instead when HUDD_REQUIRE_BROWSER is set, as in CI)."""

import os
import re
import shutil
import subprocess
import tempfile
from urllib.parse import unquote
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pandas as pd
import pytest

from hudd.config import load_config
from hudd.methods import PRIMARY
from hudd.report import build_report
from hudd.report.html import esc, table
from hudd.steps import report
from hudd.steps.common import open_context
from tests.conftest import run_cli

MAGENTA = (255, 0, 255)  # painted behind the cluster cards in the screenshot, to find them
FIRST_SCREEN = 900  # pixels: what a laptop shows before scrolling
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--hide-scrollbars", "--window-size=1280,2400"]


def _copy(trained_case: Path, tmp_path: Path) -> Path:
    case = tmp_path / "case"
    shutil.copytree(trained_case, case)
    return case


def _run(*args: str) -> None:
    result = run_cli(*args)
    assert result.exit_code == 0, result.output


def _report(case: Path) -> tuple[Path, str]:
    with open_context(case, load_config(case, {}), command="test") as ctx:
        path = report.run(ctx)
    assert path == case / "HUDD" / "report.html"
    return path, path.read_text(encoding="utf-8")


def _chromium() -> str | None:
    if Path("/usr/bin/chromium").is_file():
        return "/usr/bin/chromium"
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_after_only_hudd_test_the_report_names_the_next_step(trained_case, tmp_path):
    case = _copy(trained_case, tmp_path)
    _run("test", str(case))
    _, html = _report(case)
    assert f"Next: run <code>hudd heatmaps {case}</code>" in html
    assert f"not run yet: run <code>hudd cluster {case}</code>" not in html, "the first missing step is named, not a later one"
    assert html.count(f"not run yet: run <code>hudd heatmaps {case}</code>") == 4  # layers, clusters, unsafe set, retraining
    assert "Test accuracy" in html and "error-inducing test images" in html and "Per injected cause" in html
    assert "alexnet-small.pt" in html and "32x32 grayscale" in html
    assert "<script" not in html


def test_full_report_holds_layers_clusters_scores_unsafe_set_and_retraining_and_renders(explained_case, tmp_path):
    case = _copy(explained_case, tmp_path)
    _run("cluster", str(case))
    _, html = _report(case)
    assert f"not run yet: run <code>hudd assign {case}</code>" in html
    for args in (["assign"], ["retrain", "--retrain-epochs", "1", "--runs", "1"]):
        _run(*args, str(case))
    path, html = _report(case)

    ws = case / "HUDD"
    summary = pd.read_csv(ws / "summary.csv", keep_default_na=False)
    selected = summary[summary["selected"]].iloc[0]
    assert re.search(rf'<tr class="selected"><td>{re.escape(selected.layer)}</td><td>{re.escape(selected.alias)}</td>', html)
    assert f"selected layer <b>{selected.layer}</b>" in html
    assert f"Why: {esc(selected.why)}" in html, "the report says why that layer and k"
    clusters = pd.read_csv(ws / "ClusterAnalysis/paper/clusters.csv")
    for name in clusters["cluster"].unique():
        assert f'id="cluster-{name}"' in html, name
        assert f"{name} animation" in html and f"{name} contact sheet" in html and f"{name} simulator parameters" in html
    assert "variance ratio RR" in html and "Purity <b>" in html and "dominant cause" in html
    assert "Every step is done." in html and "not run yet" not in html
    assert html.index('id="findings"') < html.index('id="steps"'), "the report opens with the findings"
    anchors = re.findall(r'href="#([^"]+)"', html)
    assert anchors and all(f'id="{anchor}"' in html for anchor in anchors), "every in-page link resolves"
    for sentence in pd.read_csv(ws / "findings.csv")["sentence"]:
        assert esc(sentence.split(" ", 1)[1]) in html
    for method in ("original", "hudd", "B1", "B2"):
        assert f"<td>{method}</td>" in html, method
    assert "A12 vs B1" in html and "UnsafeSet/labels.csv" in html
    active = ws / f"ClusterAnalysis/{PRIMARY}/clusters.csv"
    feature_clusters = pd.read_csv(active)["cluster"].nunique() if active.is_file() else 0
    shown = feature_clusters or clusters["cluster"].nunique()
    gifs = re.findall(r'src="([^"]+\.gif)"', html)
    assert len(gifs) == shown, "one GIF per cluster of the active method"
    linked = re.findall(r'<img[^>]* src="([^"]+)"', html)
    files = [src for src in linked if not src.startswith("data:")]
    assert files and all((path.parent / unquote(src)).is_file() for src in files), "every linked picture is beside the report"
    assert "<script" not in html and "src=\"http" not in html and "src=\"file" not in html and "src=\"/" not in html, \
        "no JavaScript, nothing remote, nothing by absolute path"

    with open_context(case, load_config(case, {}), command="test") as ctx:
        assert build_report(ctx) == html, "same workspace, same bytes"

    chromium = _chromium()
    if chromium is None:
        if os.environ.get("HUDD_REQUIRE_BROWSER"):
            pytest.fail("no Chromium installed, and HUDD_REQUIRE_BROWSER is set (as in CI): install the chromium package")
        pytest.skip("no Chromium installed: install the chromium package (scripts/test does on Debian/Ubuntu as root)")
    marked = path.with_name("report-marked.html")  # beside the report, so its linked pictures load
    marked.write_text(html.replace("</head>", f"<style>section.cluster {{ background: rgb{MAGENTA} !important; }}</style></head>"),
                      encoding="utf-8")
    shot = tmp_path / "report.png"
    with tempfile.TemporaryDirectory(prefix="hudd-chromium-") as profile:
        run = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={shot}", marked.resolve().as_uri()],
                             capture_output=True, text=True, timeout=120)
    assert shot.is_file(), run.stderr[-2000:]
    pixels = iio.imread(shot)[:, :, :3].astype(int)
    assert pixels.shape[:2] == (2400, 1280)
    card = (np.abs(pixels - MAGENTA).sum(axis=2) < 30)
    assert card[:FIRST_SCREEN].any(), "the first screen shows the cluster cards"
    rest = pixels[~card]
    assert (rest < 240).any(axis=1).mean() > 0.02, "the page renders mostly blank"
    assert len(np.unique(rest // 32, axis=0)) >= 8, "too few colours: images or styles missing"


def test_every_cell_and_header_is_escaped():
    frame = pd.DataFrame({"<b>class</b>": ['<img src=x onerror="alert(1)">', "A&B"], "n": [1, 2]})
    html = table(frame)
    assert "<img" not in html and "<b>" not in html
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in html and "A&amp;B" in html
    assert esc("'\"<>&") == "&#x27;&quot;&lt;&gt;&amp;"


def test_rr_without_a_cause_column_matches_the_evaluation():
    from hudd.evaluate.evaluation import evaluate_clusters
    from hudd.report.scores import score_clusters

    rng = np.random.default_rng(3)
    params = pd.DataFrame({"image": [f"TestSet/A/{i:03d}.png" for i in range(40)], "label": "A",
                           "light_angle": rng.uniform(0, 360, 40), "openness": rng.uniform(0, 1, 40),
                           "cause": rng.choice(["none", "dim"], 40)})
    clusters = pd.DataFrame({"image": params["image"][:12], "cluster": ["C1"] * 5 + ["C2"] * 4 + ["C10"] * 3})
    with_cause = score_clusters(clusters, params)
    without = score_clusters(clusters, params.drop(columns="cause"))
    assert with_cause.parameters == without.parameters == ["light_angle", "openness"]
    assert without.evaluation is None and without.table["cluster"].tolist() == ["C1", "C2", "C10"]
    expected = evaluate_clusters(clusters, params).table
    rr = ["rr_light_angle", "rr_openness"]
    np.testing.assert_allclose(without.table[rr].to_numpy(), expected[rr].to_numpy())
    assert with_cause.table["purity"].tolist() == expected["purity"].tolist()
