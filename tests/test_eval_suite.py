"""The root-cause evaluation suite (scripts/eval_rootcause.py) produces its tables on a tiny configuration."""

import importlib.util
import sys
from pathlib import Path

import pandas as pd

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "eval_rootcause.py"


def _suite():
    spec = importlib.util.spec_from_file_location("eval_rootcause", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_the_suite_scores_every_method_and_the_probe_on_a_tiny_case(tmp_path, capsys):
    suite = _suite()
    assert suite.main(["--tiny", "--cache", str(tmp_path), "--families", "gaze", "--seeds", "0", "--methods", "paper,naive"]) == 0
    table = pd.read_csv(tmp_path / "eval_rootcause.csv")
    assert table["method"].tolist() == ["paper", "naive"] and (table["split"] == "dev").all()
    errors = pd.read_csv(tmp_path / "gaze-0" / "HUDD" / "testResult.csv").query("~correct")
    assert (table["errors"] == len(errors)).all(), "every method clusters every error image"
    assert table["purity"].between(0, 1).all() and table["coverage"].str.fullmatch(r"\d+/5").all()
    assert table.loc[table["method"] == "naive", "clusters"].item() == min(10, len(errors))
    probe = pd.read_csv(tmp_path / "probe.csv")
    assert {"model features"} <= set(probe["representation"]) and probe["representation"].str.startswith("heatmaps:").any()
    out = capsys.readouterr().out
    assert "linear-probe bound" in out and "per method" in out
    assert suite.main(["--tiny", "--cache", str(tmp_path), "--families", "gaze", "--seeds", "0", "--methods", "naive"]) == 0
    again = pd.read_csv(tmp_path / "eval_rootcause.csv").set_index("method")
    assert sorted(again.index) == ["naive", "paper"], "a later run replaces its own rows and keeps the others"
    assert again.loc["naive", "purity"] == table.set_index("method").loc["naive", "purity"], "the cached case gives the same scores"


def test_the_retraining_comparison_runs_both_selections_with_the_same_budget(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("eval_retrain", SCRIPT.with_name("eval_retrain.py"))
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main(["--tiny", "--cache", str(tmp_path), "--families", "signs", "--seeds", "1"]) == 0
    runs = pd.read_csv(tmp_path / "eval_retrain_runs.csv")
    retrained = runs[runs["method"] == "hudd"]
    assert retrained.groupby("selection")["run"].apply(sorted).to_dict() == {"paper": [1, 2], "pretrained": [1, 2]}
    budgets = retrained.groupby("selection")["unsafe_images"].first()
    assert abs(budgets["paper"] - budgets["pretrained"]) <= 0.1 * budgets.max(), "both selections label about the same images"
    table = pd.read_csv(tmp_path / "eval_retrain.csv")
    assert {"accuracy", "hazard"} <= set(table["metric"]) and table["A12"].between(0, 1).all()
    out = capsys.readouterr().out
    assert "A12 = P(default run beats paper run)" in out and "per metric, over the cases" in out
