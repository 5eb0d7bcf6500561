"""Retraining evaluation: the unsafe set selected from the default's clusters versus from the paper's.

For each family and held-out seed, the case of ``scripts/eval_rootcause.py`` with an improvement set
(simulated and trained once, cached in ``--cache``), analysed with the default method (the
pretrained clusters and the paper's heatmap clusters beside them). Then, for each of the two
clusterings: ``hudd assign --method M`` (Fig. 10, the same ``sf``, so the same labelling budget:
|TestSet| * sf * (1 - accuracy) images, spread over the clusters by size) and ``hudd retrain`` without
the baselines, ``--runs`` fine-tunings from the original weights with seeds 0, 1, ... One table
per case and metric:

    family, seed, metric, original, default, paper, A12, p

``metric`` is the test accuracy, the accuracy on the hazard images (any injected cause) and on each
cause's images; ``default`` and ``paper`` are the means over the runs of the model retrained on the
unsafe set selected from that clustering; ``A12`` (Vargha-Delaney) is the probability that a run of
the default's beats a run of the paper's, ``p`` the two-sided Mann-Whitney U p-value. Usage::

    .venv/bin/python scripts/eval_retrain.py                   # all families, held-out seeds 1-2, 5 runs
    .venv/bin/python scripts/eval_retrain.py --families signs --seeds 1 --runs 3
    .venv/bin/python scripts/eval_retrain.py --tiny            # a smoke run: measures nothing

A last table sums up each metric over the cases (means, mean A12, cases won and lost by each
selection). Writes ``<cache>/eval_retrain_runs.csv`` (every run) and ``<cache>/eval_retrain.csv`` (the table); a
case's runs are kept in ``<case>/eval_retrain-<selection>.csv``, so a rerun only computes what is missing.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eval_rootcause import FAMILIES, FULL, MODEL, TINY, _merged, each_case, show  # noqa: E402

from hudd import pipeline  # noqa: E402
from hudd.config import load_config  # noqa: E402
from hudd.data import Case  # noqa: E402
from hudd.methods import PAPER, PRIMARY  # noqa: E402
from hudd.progress import set_quiet  # noqa: E402
from hudd.stats import a12, mann_whitney_p  # noqa: E402
from hudd.steps.common import open_context  # noqa: E402

SELECTIONS = (PRIMARY, PAPER)  # whose clusters the unsafe set is selected for: the default's, the paper's
HELD_OUT = "1,2"
IMPROVEMENT_IMAGES = 3000
RETRAIN_EPOCHS = 2  # as the demo: keeps 5 runs x 2 selections x 8 cases within about an hour on a laptop CPU
TINY_RETRAIN_EPOCHS = 1


def retrain_runs(case: Case, selection: str, runs: int, epochs: int, device: str) -> pd.DataFrame:
    """The test metrics of the original model and of ``runs`` fine-tunings on the unsafe set of ``selection``'s clusters."""
    cached = case.root / f"eval_retrain-{selection}.csv"
    if cached.is_file():
        earlier = pd.read_csv(cached)
        if (earlier["method"] == "hudd").sum() == runs and earlier["retrain_epochs"].eq(epochs).all():
            return earlier
    config = load_config(case.root, {"seed": 0, "device": device, "runs": runs, "baselines": False, "retrain_epochs": epochs})
    with open_context(case.root, config, command="eval_retrain", model=MODEL) as ctx:
        pipeline.analyze(ctx)
        outcome = pipeline.retrain(ctx, method=selection)
    metrics = outcome.retrained.metrics
    metrics = metrics.drop(columns=[c for c in metrics.columns if c.startswith("cluster_")])
    metrics = metrics.assign(selection=selection, unsafe_images=len(outcome.unsafe.unsafe), retrain_epochs=epochs)
    metrics.to_csv(cached, index=False)
    return metrics


def compare_selections(runs: pd.DataFrame) -> pd.DataFrame:
    """Per metric: the original model's value, each selection's mean over its runs, A12 and p (default vs paper)."""
    original = runs[runs["method"] == "original"].iloc[0]
    retrained = runs[runs["method"] == "hudd"]
    default, paper = (retrained[retrained["selection"] == s] for s in SELECTIONS)
    metrics = ["accuracy", "hazard", *sorted(c for c in runs.columns if c.startswith("cause_"))]
    rows = []
    for metric in metrics:
        if metric not in runs.columns or pd.isna(original[metric]):
            continue
        x, y = default[metric].to_numpy(), paper[metric].to_numpy()
        rows.append({"metric": metric, "original": original[metric], "default": x.mean(), "paper": y.mean(),
                     "A12": a12(x, y), "p": mann_whitney_p(x, y)})
    budget = {f"unsafe_{s}": int(retrained.loc[retrained["selection"] == s, "unsafe_images"].iloc[0]) for s in SELECTIONS}
    return pd.DataFrame(rows).assign(**budget)


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    """Per metric over the cases: mean original, default and paper values, mean A12, and the cases where
    the default's runs beat the paper's (A12 > 0.5), lose (A12 < 0.5) and differ at p < 0.05."""
    grouped = table.groupby("metric", sort=False)
    return pd.DataFrame({
        "cases": grouped.size(), "original": grouped["original"].mean(), "default": grouped["default"].mean(),
        "paper": grouped["paper"].mean(), "mean_A12": grouped["A12"].mean(),
        "default_better": grouped["A12"].apply(lambda a: int((a > 0.5).sum())),
        "paper_better": grouped["A12"].apply(lambda a: int((a < 0.5).sum())),
        "p_below_0.05": grouped["p"].apply(lambda p: int((p < 0.05).sum())),
    }).reset_index().sort_values("metric", key=lambda m: m.map(lambda name: (name not in ("accuracy", "hazard"), name)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=Path("eval-retrain-cases"), help="Where the cases live (default ./eval-retrain-cases).")
    parser.add_argument("--families", default=",".join(FAMILIES), help=f"Comma-separated (default {','.join(FAMILIES)}).")
    parser.add_argument("--seeds", default=HELD_OUT, help=f"Comma-separated seeds (default the held-out {HELD_OUT}).")
    parser.add_argument("--runs", type=int, help="Fine-tunings per selection (default 5; 2 with --tiny).")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--tiny", action="store_true", help="Tiny cases, one epoch, two runs: checks the script runs, measures nothing.")
    args = parser.parse_args(argv)
    set_quiet(True)
    scale = dataclasses.replace(TINY, n_improve=TINY.n_test) if args.tiny else dataclasses.replace(FULL, n_improve=IMPROVEMENT_IMAGES)
    epochs = TINY_RETRAIN_EPOCHS if args.tiny else RETRAIN_EPOCHS
    runs = args.runs or (2 if args.tiny else 5)
    families = [f for f in args.families.split(",") if f]
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        parser.error(f"unknown family: {', '.join(unknown)}")
    all_runs, tables = [], []
    for family, seed, case in each_case(args.cache, families, [int(s) for s in args.seeds.split(",")], scale, args.device):
        case_runs = pd.concat([retrain_runs(case, s, runs, epochs, args.device) for s in SELECTIONS], ignore_index=True)
        all_runs.append(case_runs.assign(family=family, case_seed=seed))
        table = compare_selections(case_runs).assign(family=family, seed=seed)
        tables.append(table[["family", "seed", *table.columns[:-2]]])
        show(tables[-1], digits=4)
    args.cache.mkdir(parents=True, exist_ok=True)
    _merged(args.cache / "eval_retrain_runs.csv", pd.concat(all_runs, ignore_index=True), ["family", "case_seed", "selection", "method", "run"])
    table = _merged(args.cache / "eval_retrain.csv", pd.concat(tables, ignore_index=True), ["family", "seed", "metric"])
    print("\nall cases (default = unsafe set selected from the default method's clusters; A12 = P(default run beats paper run)):")
    show(table, digits=4)
    print("\nper metric, over the cases:")
    show(summarise(table), digits=4)
    return 0


if __name__ == "__main__":
    sys.exit(main())
