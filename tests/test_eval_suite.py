"""The root-cause evaluation suite (scripts/eval_rootcause.py) produces its tables on a tiny configuration."""

import importlib.util
import sys
from pathlib import Path

import pandas as pd
import pytest

from hudd.methods import PRIMARY, REGISTRY

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "eval_rootcause.py"


def _script(name: str = "eval_rootcause"):
    spec = importlib.util.spec_from_file_location(name, SCRIPT.with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_the_suite_scores_every_method_and_the_probe_on_a_tiny_case(tmp_path, capsys):
    suite = _script()
    assert suite.main(["--tiny", "--cache", str(tmp_path), "--families", "gaze", "--seeds", "0", "--methods", "paper,naive"]) == 0
    table = pd.read_csv(tmp_path / "eval_rootcause.csv")
    assert table["method"].tolist() == ["paper", "naive"] and (table["split"] == "dev").all()
    errors = pd.read_csv(tmp_path / "gaze-0" / "HUDD" / "testResult.csv").query("~correct")
    assert (table["errors"] == len(errors)).all(), "every method clusters every error image"
    assert table["purity"].between(0, 1).all() and table["coverage"].str.fullmatch(r"\d+/5").all()
    assert table.loc[table["method"] == "naive", "clusters"].item() == min(10, len(errors))
    assert (table["params_named"] <= table["pairs"]).all() and (table["pixels_named"] <= table["pixel_pairs"]).all()
    probe = pd.read_csv(tmp_path / "probe.csv")
    assert {"model features"} <= set(probe["representation"]) and probe["representation"].str.startswith("heatmaps:").any()
    out = capsys.readouterr().out
    assert "linear-probe bound" in out and "per method" in out and "described_pixels" in out
    docs = tmp_path / "docs"
    docs.mkdir()
    assert suite.main(["--tiny", "--cache", str(tmp_path), "--families", "gaze", "--seeds", "0", "--methods", "naive",
                       "--docs", str(docs)]) == 0
    again = pd.read_csv(tmp_path / "eval_rootcause.csv").set_index("method")
    assert sorted(again.index) == ["naive", "paper"], "a later run replaces its own rows and keeps the others"
    assert again.loc["naive", "purity"] == table.set_index("method").loc["naive", "purity"], "the cached case gives the same scores"
    page = (docs / "evaluation.md").read_text()
    naive = again.loc["naive"]
    assert f"| dev | gaze | 0 | {naive['errors']} | {naive['purity']:.2f}, {naive['coverage']}" in page, "every method of the cache"
    assert (docs / "eval_rootcause.csv").is_file() and (docs / "eval_probe.csv").is_file()


@pytest.mark.slow
def test_the_retraining_comparison_runs_both_selections_and_the_baselines_with_the_same_budget(tmp_path, capsys):
    script = _script("eval_retrain")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "evaluation.md").write_text("# Evaluation\n\nwritten by hand, kept\n")
    assert script.main(["--tiny", "--cache", str(tmp_path), "--families", "glyphs", "--seeds", "1", "--budget", "12",
                        "--docs", str(docs)]) == 0
    runs = pd.read_csv(tmp_path / "eval_retrain_runs.csv")
    retrained = runs[runs["method"] == "hudd"]
    assert retrained.groupby("selection")["run"].apply(sorted).to_dict() == {"paper": [1, 2], PRIMARY: [1, 2]}
    assert sorted(runs.loc[runs["method"].isin(["B1", "B2"]), "selection"].unique()) == [PRIMARY], "baselines beside the default's"
    assert (retrained.groupby("selection")["unsafe_images"].first() == 12).all(), "both selections label the same budget"
    table = pd.read_csv(tmp_path / "eval_retrain.csv")
    assert {"accuracy", "hazard"} <= set(table["metric"])
    assert table[["A12_paper", "A12_B1", "A12_B2"]].stack().between(0, 1).all()
    out = capsys.readouterr().out
    assert "A12 = P(a default run beats the other's)" in out and "per metric, over the cases" in out
    page = (docs / "evaluation.md").read_text()
    assert "written by hand, kept" in page and page.count("<!-- retrain: begin -->") == 1 and "| glyphs | 1 | accuracy |" in page
    assert (docs / "eval_retrain.csv").is_file() and (docs / "eval_retrain_runs.csv").is_file()

    other = "heatmaps" if REGISTRY[PRIMARY].select_in == "features" else "features"
    assert script.main(["--tiny", "--cache", str(tmp_path), "--families", "glyphs", "--seeds", "1", "--budget", "12",
                        "--select-in", other]) == 0
    case = next(p for p in tmp_path.iterdir() if (p / "eval_retrain-paper.csv").is_file())
    trained = pd.read_csv(case / "HUDD" / "Retrain" / "metrics.csv")["method"]
    assert not trained.isin(["B1", "B2"]).any(), "the baselines of another space, same clusters and budget, are reused"
    again = pd.read_csv(case / f"eval_retrain-{PRIMARY}-{other}.csv")
    assert set(again["method"]) == {"original", "hudd", "B1", "B2"} and (again["select_in"] == other).all()
