"""``hudd demo``: the whole story on simulated eyes, end to end.

Simulate the gaze case, train ``alexnet-small``, then ``hudd analyze`` (test, heatmaps, cluster,
export, describe), ``hudd retrain`` (assign 300 images to label, 10 % of the improvement set, as an
engineer with that labelling budget would: ``--budget 300``; retrain with the baselines B1 and B2
on the same budget: one run each with hudd's default recipe, so the demo stays within minutes on a
laptop CPU; ``hudd retrain demo-case --runs 5`` repeats them with five seeds), ``hudd evaluate``
and the report, and print a short summary. Idempotent: data with
the same simulation settings, an existing model and current steps are reused (``--force`` redoes
everything).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .models.train import train_baseline
from .config import Config
from .case.data import Case, read_params
from .core.progress import echo
from .sim import SimulationSettings, simulate_case
from .evaluate.evaluation import Evaluation
from .pipeline import AnalyzeOutcome, RetrainPipelineOutcome, analyze, retrain
from .steps import evaluate as evaluate_step
from .steps import report as report_step
from .steps.common import open_context
from .workspace.workspace import Workspace

__all__ = ["DemoResult", "run_demo", "DEMO_MODEL"]

DEMO_MODEL = "gaze-alexnet-small.pt"
DEMO_RUNS = 1  # retraining runs per method (HUDD, B1, B2): one each keeps the demo within minutes on a laptop CPU
DEMO_BUDGET = 300  # images to label: 10 % of the improvement set


@dataclass
class DemoResult:
    """What the demo made and measured."""

    case: Case
    model_path: Path
    trained: bool
    test_results: pd.DataFrame
    analysis: AnalyzeOutcome
    retraining: RetrainPipelineOutcome
    evaluation: Evaluation
    report: Path
    workspace: Workspace


def run_demo(directory: Path, config: Config, *, settings: SimulationSettings | None = None, force: bool = False) -> DemoResult:
    """Run the demo in ``directory`` (created if absent) and return its results."""
    case = Case(Path(directory))
    settings = settings or SimulationSettings(task="gaze", seed=config.seed)
    simulated = simulate_case(case.root, settings, force=force)
    echo("simulate: " + ("wrote" if simulated else "reused") + f" {case.datasets}")
    model_path = case.models / DEMO_MODEL
    trained = simulated or force or not model_path.is_file()
    if trained:
        train_baseline(case, config, arch="alexnet-small", name=DEMO_MODEL, force=True)
    else:
        echo(f"train: reused {model_path}")
    with open_context(case.root, config, command="hudd demo", model=DEMO_MODEL) as ctx:
        analysis = analyze(ctx, force=force)
        demo_retraining = dataclasses.replace(ctx.config, runs=DEMO_RUNS)
        retraining = retrain(dataclasses.replace(ctx, config=demo_retraining), budget=DEMO_BUDGET, force=force)
        evaluation = evaluate_step.run(ctx)
        report = report_step.run(ctx)
    params = read_params(case, "TestSet")
    tested = analysis.tested.test
    results = tested.merge(params[["image", "cause"]], on="image", how="left") if params is not None else tested
    return DemoResult(case, model_path, trained, results, analysis, retraining, evaluation, report, ctx.workspace)
