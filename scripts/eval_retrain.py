"""Retraining evaluation: the unsafe set selected from the default's clusters versus the paper's, and versus B1/B2.

For each family and seed, the case of ``scripts/eval_rootcause.py`` with an improvement set
(simulated and trained once, cached in ``--cache``), analysed with the default method (its clusters
and the paper's heatmap clusters beside them). Then, for each of the two clusterings: ``hudd
assign --method M`` with the same labelling budget (``--budget`` images, or equation 7 with the
same ``sf``) and ``hudd retrain`` with ``--runs`` fine-tunings from the original weights (seeds 0,
1, ...), with the retraining recipe of hudd's defaults (or ``--epochs`` and ``--mix``); the
baselines B1 and B2 (random selections of the same budget, the identical recipe) run beside the
default's selection. One table per case and metric:

    family, seed, metric, original, default, paper, B1, B2, A12 and p of default vs paper, vs B1, vs B2

``metric`` is the test accuracy, the accuracy on the hazard images (any injected cause) and on each
cause's images; the values are the means over the runs; ``A12`` (Vargha-Delaney) is the probability
that a run of the default's selection beats a run of the other, ``p`` the two-sided Mann-Whitney U
p-value. Usage::

    .venv/bin/python scripts/eval_retrain.py --seeds 0              # the development seeds, 5 runs
    .venv/bin/python scripts/eval_retrain.py --families signs --seeds 3 --runs 3
    .venv/bin/python scripts/eval_retrain.py --tiny                 # a smoke run: measures nothing
    .venv/bin/python scripts/eval_retrain.py --docs docs            # also write docs/evaluation.md and the CSVs

A last table sums up each metric over the cases (means, mean A12, cases won and lost). Writes
``<cache>/eval_retrain_runs.csv`` (every run) and ``<cache>/eval_retrain.csv`` (the table); a case's
runs are kept in ``<case>/eval_retrain-<selection>.csv`` with their recipe, so a rerun with the same
recipe only computes what is missing. With ``--docs DIR``: the ``retrain`` section of
``DIR/evaluation.md`` and the CSVs in ``DIR``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eval_docs import markdown_table, provenance, write_section  # noqa: E402
from eval_rootcause import FAMILIES, FULL, MODEL, TINY, _merged, each_case, show  # noqa: E402

from hudd import pipeline  # noqa: E402
from hudd.config import load_config  # noqa: E402
from hudd.case.data import Case  # noqa: E402
from hudd.methods import PAPER, PRIMARY  # noqa: E402
from hudd.core.progress import set_quiet  # noqa: E402
from hudd.retrain.stats import a12, mann_whitney_p  # noqa: E402
from hudd.steps import retrain as retrain_step  # noqa: E402
from hudd.steps.common import open_context  # noqa: E402

SELECTIONS = (PRIMARY, PAPER)  # whose clusters the unsafe set is selected for: the default's, the paper's
BASELINES = ("B1", "B2")
DEV = "0"
IMPROVEMENT_IMAGES = 3000
TINY_RETRAIN_EPOCHS = 1


@dataclasses.dataclass(frozen=True)
class Recipe:
    """What every selection is retrained with: the budget (None: equation 7 with ``sf``), epochs, mix and runs."""

    budget: int | None
    epochs: int | None
    mix: str | None
    runs: int
    select_in: str | None = None

    def overrides(self) -> dict:
        """Config keys set by this recipe (``None``: hudd's default)."""
        return {"retrain_epochs": self.epochs, "retrain_mix": self.mix, "runs": self.runs, "select_in": self.select_in}

    def columns(self, config) -> dict:
        """The recipe as it ran, for the cached runs (so another recipe is not mistaken for it)."""
        return {"budget": -1 if self.budget is None else self.budget, "retrain_epochs": config.retrain_epochs,
                "retrain_mix": config.retrain_mix, "sf": config.sf, "select_in": config.select_in,
                "retrain_version": retrain_step.VERSION}


def retrain_runs(case: Case, selection: str, recipe: Recipe, device: str) -> pd.DataFrame:
    """The test metrics of the original model and of the runs fine-tuned on the unsafe set of ``selection``'s
    clusters (with B1 and B2 beside the default's selection)."""
    overrides = recipe.overrides() | ({"select_in": None} if selection == PAPER else {})  # the paper's are in heatmaps
    # the suite trains its own checkpoints (no input convention to get wrong); one-epoch --tiny models are about chance
    config = load_config(case.root, {"seed": 0, "device": device, "allow_weak_model": True, **overrides})
    columns = recipe.columns(config)
    cached = case.root / f"eval_retrain-{selection}{'' if selection == PAPER else f'-{config.select_in}'}.csv"
    if cached.is_file():
        earlier = pd.read_csv(cached)
        if _same_recipe(earlier, columns) and (earlier["method"] == "hudd").sum() == recipe.runs and (
                selection == PAPER or earlier["method"].eq("B2").any()):
            return earlier
    baselines = _cached_baselines(case, columns, recipe.runs) if selection == PRIMARY else None
    config = dataclasses.replace(config, baselines=selection == PRIMARY and baselines is None)
    with open_context(case.root, config, command="eval_retrain", model=MODEL) as ctx:
        pipeline.analyze(ctx)
        outcome = pipeline.retrain(ctx, method=selection, budget=recipe.budget)
    metrics = outcome.retrained.metrics
    metrics = metrics.drop(columns=[c for c in metrics.columns if c.startswith("cluster_")])
    metrics = metrics.assign(selection=selection, unsafe_images=len(outcome.unsafe.unsafe), **columns)
    if baselines is not None:
        metrics = pd.concat([metrics, baselines.assign(select_in=config.select_in)], ignore_index=True)
    metrics.to_csv(cached, index=False)
    return metrics


def _same_recipe(runs: pd.DataFrame, columns: dict) -> bool:
    """``runs`` ran with the recipe ``columns`` describe."""
    return all(runs.get(key, pd.Series([None])).eq(value).all() for key, value in columns.items())


def _cached_baselines(case: Case, columns: dict, runs: int) -> pd.DataFrame | None:
    """B1 and B2's runs from an earlier selection in another space for the default's clusters, with the same
    budget and recipe: they depend on the clusters' quotas, not on where improvement images were compared."""
    recipe = {key: value for key, value in columns.items() if key != "select_in"}
    for path in sorted(case.root.glob(f"eval_retrain-{PRIMARY}-*.csv")):
        earlier = pd.read_csv(path)
        found = earlier[earlier["method"].isin(BASELINES)]
        if _same_recipe(earlier, recipe) and all((found["method"] == b).sum() == runs for b in BASELINES):
            return found
    return None


def compare_selections(runs: pd.DataFrame) -> pd.DataFrame:
    """Per metric: the original model's value, the mean of each selection and baseline, and A12 and p of the
    default's runs against each of the others."""
    original = runs[runs["method"] == "original"].iloc[0]
    retrained = runs[runs["method"] == "hudd"]
    default, paper = (retrained[retrained["selection"] == s] for s in SELECTIONS)
    others = {"paper": paper, **{b: runs[runs["method"] == b] for b in BASELINES}}
    metrics = ["accuracy", "hazard", *sorted(c for c in runs.columns if c.startswith("cause_"))]
    rows = []
    for metric in metrics:
        if metric not in runs.columns or pd.isna(original[metric]):
            continue
        x = default[metric].to_numpy()
        row = {"metric": metric, "original": original[metric], "default": x.mean()}
        row.update({name: other[metric].mean() for name, other in others.items()})
        for name, other in others.items():
            y = other[metric].to_numpy()
            row[f"A12_{name}"] = a12(x, y) if len(y) else float("nan")
            row[f"p_{name}"] = mann_whitney_p(x, y) if len(y) else float("nan")
        rows.append(row)
    budget = {f"unsafe_{s}": int(retrained.loc[retrained["selection"] == s, "unsafe_images"].iloc[0]) for s in SELECTIONS}
    return pd.DataFrame(rows).assign(**budget)


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    """Per metric over the cases: the mean values, and per comparison the mean A12 and the cases the default's
    selection wins (A12 > 0.5)."""
    grouped = table.groupby("metric", sort=False)
    summary = {"cases": grouped.size(), **{name: grouped[name].mean() for name in ("original", "default", "paper", *BASELINES)}}
    for name in ("paper", *BASELINES):
        summary[f"mean_A12_{name}"] = grouped[f"A12_{name}"].mean()
        summary[f"wins_{name}"] = grouped[f"A12_{name}"].apply(lambda a: int((a > 0.5).sum()))
    return pd.DataFrame(summary).reset_index().sort_values(
        "metric", key=lambda m: m.map(lambda name: (name not in ("accuracy", "hazard"), name)))


def docs_section(table: pd.DataFrame, argv: list[str]) -> str:
    """The ``retrain`` section of docs/evaluation.md: test and hazard accuracy per case, then the summary."""
    shown = table[table["metric"].isin(["accuracy", "hazard"])]
    columns = ["family", "seed", "metric", "original", "default", "paper", "B1", "B2", "A12_paper", "A12_B1", "A12_B2",
               f"unsafe_{PRIMARY}", f"unsafe_{PAPER}"]
    return "\n\n".join([
        "## Retraining on the selected images against the baselines",
        f"Made with {provenance(argv)} `default` is the model retrained on the images selected for the default "
        f"method's clusters ({PRIMARY}), `paper` for the paper's heatmap clusters, B1/B2 on random selections of the "
        "same budget; every one with the identical recipe. Means over the runs; A12 is the probability that a run of "
        "the default's selection beats a run of the other.",
        markdown_table(shown[[c for c in columns if c in shown.columns]], digits=4),
        "Over the cases:",
        markdown_table(summarise(table), digits=4),
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=Path("eval-retrain-cases"), help="Where the cases live (default ./eval-retrain-cases).")
    parser.add_argument("--families", default=",".join(FAMILIES), help=f"Comma-separated (default {','.join(FAMILIES)}).")
    parser.add_argument("--seeds", default=DEV, help=f"Comma-separated seeds (default the development seed {DEV}).")
    parser.add_argument("--runs", type=int, help="Fine-tunings per selection (default 5; 2 with --tiny).")
    parser.add_argument("--budget", type=int, help="Images to label per selection (default: equation 7 with sf).")
    parser.add_argument("--epochs", type=int, help="Fine-tuning epochs (default: hudd's).")
    parser.add_argument("--mix", choices=("union", "paired"), help="How the selected images join the training set (default: hudd's).")
    parser.add_argument("--select-in", choices=("auto", "heatmaps", "features"),
                        help="Where the default's clusters select improvement images (default: hudd's).")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--tiny", action="store_true", help="Tiny cases, one epoch, two runs: checks the script runs, measures nothing.")
    parser.add_argument("--docs", type=Path, help="Also write DIR/evaluation.md (its retrain section) and the CSVs there.")
    args = parser.parse_args(argv)
    set_quiet(True)
    scale = dataclasses.replace(TINY, n_improve=TINY.n_test) if args.tiny else dataclasses.replace(FULL, n_improve=IMPROVEMENT_IMAGES)
    recipe = Recipe(budget=args.budget, epochs=TINY_RETRAIN_EPOCHS if args.tiny else args.epochs, mix=args.mix,
                    runs=args.runs or (2 if args.tiny else 5), select_in=args.select_in)
    families = [f for f in args.families.split(",") if f]
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        parser.error(f"unknown family: {', '.join(unknown)}")
    all_runs, tables = [], []
    for family, seed, case in each_case(args.cache, families, [int(s) for s in args.seeds.split(",")], scale, args.device):
        case_runs = pd.concat([retrain_runs(case, s, recipe, args.device) for s in SELECTIONS], ignore_index=True)
        all_runs.append(case_runs.assign(family=family, case_seed=seed))
        table = compare_selections(case_runs).assign(family=family, seed=seed)
        tables.append(table[["family", "seed", *table.columns[:-2]]])
        show(tables[-1], digits=4)
    args.cache.mkdir(parents=True, exist_ok=True)
    runs = _merged(args.cache / "eval_retrain_runs.csv", pd.concat(all_runs, ignore_index=True),
                   ["family", "case_seed", "selection", "method", "run"])
    table = _merged(args.cache / "eval_retrain.csv", pd.concat(tables, ignore_index=True), ["family", "seed", "metric"])
    print("\nall cases (default = unsafe set selected for the default method's clusters; A12 = P(a default run beats the other's)):")
    show(table, digits=4)
    print("\nper metric, over the cases:")
    show(summarise(table), digits=4)
    if args.docs:
        table.to_csv(args.docs / "eval_retrain.csv", index=False)
        runs.to_csv(args.docs / "eval_retrain_runs.csv", index=False)
        path = write_section("retrain", docs_section(table, argv if argv is not None else sys.argv[1:]), args.docs / "evaluation.md")
        print(f"\nwritten: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
