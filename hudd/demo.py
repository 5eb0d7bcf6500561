"""``hudd demo``: the whole story on simulated eyes, end to end.

Simulate the gaze case, train ``alexnet-small``, then run every HUDD step that exists so far and
print a short summary. Idempotent: data with the same simulation settings and an existing model are
reused (``--force`` redoes everything).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .baseline import evaluate_on, train_baseline
from .config import Config
from .data import Case
from .device import resolve_device
from .models import load_model
from .progress import echo
from .sim import SimulationSettings, simulate_case

__all__ = ["DemoResult", "run_demo", "DEMO_MODEL"]

DEMO_MODEL = "gaze-alexnet-small.pt"


@dataclass
class DemoResult:
    """What the demo made and measured."""

    case: Case
    model_path: Path
    simulated: bool
    trained: bool
    test_results: pd.DataFrame


def run_demo(directory: Path, config: Config, *, settings: SimulationSettings | None = None, force: bool = False) -> DemoResult:
    """Run the demo in ``directory`` (created if absent) and return its results."""
    case = Case(Path(directory))
    settings = settings or SimulationSettings(task="gaze", seed=config.seed)
    simulated = simulate_case(case.root, settings, force=force)
    echo("simulate: " + ("wrote" if simulated else "reused") + f" {case.datasets}")
    model_path = case.models / DEMO_MODEL
    if simulated or force or not model_path.is_file():
        result = train_baseline(case, config, arch="alexnet-small", name=DEMO_MODEL, force=True)
        return DemoResult(case, model_path, simulated, True, result.test_results)
    echo(f"train: reused {model_path}")
    loaded = load_model(model_path)
    results = evaluate_on(case, "TestSet", loaded.module, loaded.spec, config, resolve_device(config.device), model_name=model_path.name)
    return DemoResult(case, model_path, simulated, False, results)
