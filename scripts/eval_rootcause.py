"""Root-cause evaluation suite: every clustering method on simulated case families at several seeds.

For each family (``hudd simulate --task``) and seed: simulate the case, train its model once
(cached in ``--cache``: a case whose data and model exist is reused), test it, then run every
method on its error-inducing test images and score the clusters against the injected causes with
``hudd evaluate``'s scoring (:func:`hudd.evaluate.evaluation.evaluate_clusters`). One table:

    family, seed, split (dev | held-out), method, errors, clusters, purity, coverage, small, seconds

``purity`` is weighted cause purity, ``coverage`` the causes dominating a cluster of >= 3 images
at purity >= 0.5, ``uncovered`` the causes with at least 5 errors that no cluster covers,
``small`` the share of images in clusters smaller than 5 (noise counted as small), ``most_per_cause``
the largest number of clusters one cause dominates; ``purity_injected`` the same purity over the errors with an injected cause only (the
clusters as they are, the nominal errors left out: an error on a nominal image has no known
cause to score), ``pairs`` the (cause, cluster it dominates) pairs,
``params_named`` those whose description from params.csv names the parameter the cause changed and
``pixels_named`` of ``pixel_pairs`` those whose description from the pixels names the image property
it changed (:func:`hudd.evaluate.descriptions.score_descriptions`). A second table gives the **linear-probe bound** per representation: the accuracy of a
cross-validated logistic regression predicting the cause of each error image from the
representation a method clusters (the paper's selected-layer heatmaps, the model's penultimate
features, the pretrained backbone's features). A method scoring far below its bound clusters
badly; a low bound means the representation does not hold the cause at all.

Seed 0 of each family is for development: every default is chosen on it alone; seeds 1-2 are
held out. Usage::

    .venv/bin/python scripts/eval_rootcause.py                       # all families, seeds 0-2
    .venv/bin/python scripts/eval_rootcause.py --families gaze --seeds 0 --methods paper,pretrained
    .venv/bin/python scripts/eval_rootcause.py --tiny                # a minute-long smoke run
    .venv/bin/python scripts/eval_rootcause.py --docs docs           # also write docs/evaluation.md and the CSVs

Writes ``<cache>/eval_rootcause.csv`` and ``<cache>/probe.csv`` beside the printed tables; a later run replaces
the rows of the cases and methods it ran and keeps the others, so runs add up. With ``--docs DIR``
the tables of every case in the cache go to ``DIR/evaluation.md`` (its ``rootcause`` section,
:mod:`eval_docs`) and the CSVs to ``DIR/eval_rootcause.csv`` and ``DIR/eval_probe.csv``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import StratifiedKFold, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from eval_docs import markdown_table, provenance, write_section  # noqa: E402

from hudd.models.train import train_baseline  # noqa: E402
from hudd.config import load_config  # noqa: E402
from hudd.case.data import Case, read_params  # noqa: E402
from hudd.describe.image_properties import properties_table  # noqa: E402
from hudd.evaluate.descriptions import score_descriptions  # noqa: E402
from hudd.evaluate.evaluation import NOISE, evaluate_clusters  # noqa: E402
from hudd.explain.features import PRETRAINED  # noqa: E402
from hudd.methods import FEATURE_METHODS, PAPER  # noqa: E402
from hudd.core.progress import set_quiet  # noqa: E402
from hudd.sim import SimulationSettings, simulate_case  # noqa: E402
from hudd.sim.params import TASKS, derived_parameters, evidence  # noqa: E402
from hudd.steps import cluster as cluster_step  # noqa: E402
from hudd.steps import feature_cluster  # noqa: E402
from hudd.steps import heatmaps as heatmaps_step  # noqa: E402
from hudd.steps import test as test_step  # noqa: E402
from hudd.steps.common import open_context  # noqa: E402

FAMILIES = tuple(task for task in TASKS if task != "landmarks")  # classification families
METHODS = (PAPER, *FEATURE_METHODS)
MODEL = "model.pt"
DEV_SEEDS = (0,)


@dataclasses.dataclass(frozen=True)
class Scale:
    """Images per set and training epochs of one suite run."""

    n_train: int
    n_test: int
    epochs: int
    n_improve: int = 0


FULL = Scale(n_train=6000, n_test=3000, epochs=6)
TINY = Scale(n_train=240, n_test=160, epochs=1)


def prepare(cache: Path, family: str, seed: int, scale: Scale, device: str) -> Case:
    """The case of ``family`` at ``seed``: simulated and trained once, reused afterwards."""
    case = Case(cache / f"{family}-{seed}")
    settings = SimulationSettings(task=family, n_train=scale.n_train, n_test=scale.n_test, n_improve=scale.n_improve, seed=seed,
                                  size=32 if family == "glyphs" else 64)
    simulated = simulate_case(case.root, settings)
    if simulated or not (case.models / MODEL).is_file():
        config = load_config(case.root, {"seed": seed, "epochs": scale.epochs, "device": device})
        train_baseline(case, config, name=MODEL, force=True)
    return case


def each_case(cache: Path, families: list[str], seeds: list[int], scale: Scale, device: str):
    """``(family, seed, case)`` for every family and seed, each case prepared (simulated and trained once)."""
    for family in families:
        for seed in seeds:
            yield family, seed, prepare(cache, family, seed, scale, device)


def show(frame: pd.DataFrame, digits: int = 2) -> None:
    """Print ``frame`` as a table (a closed pipe, as with ``| head``, is not an error)."""
    with contextlib.suppress(BrokenPipeError):
        print(frame.to_string(index=False, float_format=f"{{:.{digits}f}}".format), flush=True)


SMALL_CLUSTER = 5  # images: a cluster smaller than this shows too little to read a cause from
COUNTED_CAUSE = 5  # errors: a cause with at least this many must be covered


def _scores(clusters: pd.DataFrame, params: pd.DataFrame) -> dict:
    evaluation = evaluate_clusters(clusters, params)
    table = evaluation.table
    small = table.loc[(table["size"] < SMALL_CLUSTER) | (table["cluster"] == NOISE), "size"].sum() / max(1, table["size"].sum())
    errors_per_cause = params.set_index("image").loc[clusters["image"], "cause"].value_counts()
    counted = [c for c in evaluation.causes if errors_per_cause.get(c, 0) >= COUNTED_CAUSE]
    clustered = table[(table["cluster"] != NOISE) & (table["purity"] >= 0.5)]
    return {"errors": int(table["size"].sum()), "clusters": int((table["cluster"] != NOISE).sum()), "purity": evaluation.purity,
            "purity_injected": evaluation.purity_injected,
            "coverage": f"{len(evaluation.covered)}/{len(evaluation.causes)}", "covered_share": len(evaluation.covered) / max(1, len(evaluation.causes)),
            "uncovered": " ".join(sorted(set(counted) - set(evaluation.covered))),
            "small": float(small), "most_per_cause": int(clustered["dominant_cause"].value_counts().max()) if len(clustered) else 0}


def _described(clusters: pd.DataFrame, params: pd.DataFrame, properties: pd.DataFrame, family: str) -> dict:
    """How many (cause, dominated cluster) pairs the cluster's descriptions name the cause's parameter and property for."""
    pairs = score_descriptions(clusters, params, properties, evidence(family))
    pixels = pairs["property_named"].dropna()
    return {"pairs": len(pairs), "params_named": int(pairs["parameter_named"].sum()), "pixel_pairs": len(pixels),
            "pixels_named": int(pixels.astype(bool).sum())}


def run_method(ctx, method: str) -> tuple[pd.DataFrame, float]:
    """Clusters of ``method`` on the case of ``ctx`` (image, cluster) and the seconds it took (features included).

    ``pretrained:<block>`` is the pretrained method on another block of the backbone (for choosing the default).
    """
    started = time.perf_counter()
    if method == PAPER:
        heatmaps_step.run(ctx)
        clusters = cluster_step.run(ctx).clusters
    elif method.startswith("pretrained:"):
        clusters = feature_cluster.run(ctx, "pretrained", extractor=f"{PRETRAINED}:{method.split(':', 1)[1]}").clusters
    else:
        clusters = feature_cluster.run(ctx, method).clusters
    return clusters[["image", "cluster"]], time.perf_counter() - started


def representations(ctx) -> dict[str, np.ndarray]:
    """What each method clusters, per error image in ``testResult.csv`` order (for the probe)."""
    ws = ctx.workspace
    found = {}
    summary = ws.summary_csv
    if summary.is_file():
        selected = pd.read_csv(summary, keep_default_na=False).query("selected")["layer"].iloc[0]
        heat = np.load(ws.heatmap(selected), mmap_mode="r")
        found[f"heatmaps:{selected}"] = np.asarray(heat, dtype=np.float32).reshape(len(heat), -1)
    for method, label in (("naive", "model features"), ("pretrained", "pretrained features"), ("joint", "joint features")):
        path = ws.cluster_dir(method) / "features.npy"
        if path.is_file():
            found[label] = np.load(path)
    return found


def probe(features: np.ndarray, causes: np.ndarray, seed: int) -> float:
    """5-fold (or fewer, for rare causes) cross-validated accuracy of a logistic regression predicting the cause."""
    counts = pd.Series(causes).value_counts()
    folds = int(min(5, counts.min()))
    if folds < 2 or len(counts) < 2:
        return float("nan")
    x = features if features.shape[1] <= 4096 else _project(features, seed)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return float(cross_val_score(model, x, causes, cv=cv).mean())


def _project(features: np.ndarray, seed: int) -> np.ndarray:
    """A random Gaussian projection to 4096 dimensions (keeps distances; bounds the probe's cost)."""
    rng = np.random.default_rng(seed)
    return features @ (rng.standard_normal((features.shape[1], 4096)).astype(np.float32) / np.sqrt(4096))


def evaluate_case(case: Case, family: str, seed: int, methods: tuple[str, ...], device: str) -> tuple[list[dict], list[dict]]:
    # the suite trains its own checkpoints (no input convention to get wrong); one-epoch --tiny models are about chance
    config = load_config(case.root, {"seed": 0, "device": device, "allow_weak_model": True})
    params = read_params(case, "TestSet")
    params = params.assign(**{k: v for k, v in derived_parameters(family, params).items() if k not in params})  # older cases
    split = "dev" if seed in DEV_SEEDS else "held-out"
    rows, probes = [], []
    with open_context(case.root, config, command="eval_rootcause", model=MODEL) as ctx:
        test_step.run(ctx)
        properties = properties_table(case, params["image"].tolist())
        for method in sorted(methods, key=lambda m: m == "pretrained"):  # its default last: the probe reads its features
            clusters, seconds = run_method(ctx, method)
            rows.append({"family": family, "seed": seed, "split": split, "method": method, **_scores(clusters, params),
                         **_described(clusters, params, properties, family), "seconds": round(seconds, 1)})
        errors = pd.read_csv(ctx.workspace.test_result).query("~correct")["image"]
        causes = params.set_index("image").loc[errors, "cause"].to_numpy()
        for name, features in representations(ctx).items():
            probes.append({"family": family, "seed": seed, "split": split, "representation": name, "features": features.shape[1],
                           "probe_accuracy": probe(features, causes, seed)})
    return rows, probes


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    """Per method and split: mean and lowest purity, the cases where every cause with >= 5 errors is covered,
    the largest share in small clusters and the most clusters one cause dominates."""
    uncovered = table["uncovered"].fillna("").astype(str)
    return (table.assign(all_counted_covered=uncovered.str.strip().eq(""))
            .groupby(["split", "method"])
            .agg(cases=("purity", "size"), mean_purity=("purity", "mean"), lowest_purity=("purity", "min"),
                 mean_purity_injected=("purity_injected", "mean"),
                 all_covered=("all_counted_covered", "sum"), worst_small=("small", "max"),
                 most_per_cause=("most_per_cause", "max"), pairs=("pairs", "sum"), params_named=("params_named", "sum"),
                 pixel_pairs=("pixel_pairs", "sum"), pixels_named=("pixels_named", "sum"), mean_seconds=("seconds", "mean"))
            .reset_index()
            .assign(described=lambda t: t["params_named"] / t["pairs"].where(t["pairs"] > 0),
                    described_pixels=lambda t: t["pixels_named"] / t["pixel_pairs"].where(t["pixel_pairs"] > 0))
            .drop(columns=["params_named", "pixel_pairs", "pixels_named"]))


def docs_section(table: pd.DataFrame, probes: pd.DataFrame, argv: list[str]) -> str:
    """The ``rootcause`` section of docs/evaluation.md: every case's purity and coverage per method, then the summary."""
    cells = table.assign(cell=[f"{p:.2f}, {c}" + (f" (misses {u})" if isinstance(u, str) and u.strip() else "")
                               for p, c, u in zip(table["purity"], table["coverage"], table["uncovered"])])
    cases = cells.pivot_table(index=["split", "family", "seed", "errors"], columns="method", values="cell", aggfunc="first").reset_index()
    cases = cases.sort_values(["split", "family", "seed"], key=lambda c: c.map({"dev": 0, "held-out": 1}) if c.name == "split" else c)
    probe_cases = probes.pivot_table(index=["family", "seed"], columns="representation", values="probe_accuracy").reset_index()
    return "\n\n".join([
        "## Root-cause clusters against the injected causes",
        f"Made with {provenance(argv)} Seed 0 of each family is for development; every default was chosen on it "
        "alone. The other seeds are held out and were run once, after the defaults were fixed.",
        "Weighted purity, and coverage (causes dominating a cluster of at least 3 images at purity >= 0.5); "
        "\"misses\" names a cause with at least 5 errors that no cluster covers:",
        markdown_table(cases.rename(columns={"errors": "errors"})),
        "Per method: mean and lowest purity, the mean purity over the errors with an injected cause only "
        "(`mean_purity_injected`: the same clusters, the errors on nominal images left out, since they have no known "
        "cause to score), cases where every cause with at least 5 errors is covered, the largest "
        "share of error images in clusters smaller than 5, the most clusters one cause dominates, and how well the "
        "clusters' descriptions name what their cause changed: over the (cause, cluster it dominates) `pairs`, the "
        "share whose description from params.csv names the parameter the simulator changed, in the right direction "
        "(`described`), and, for the causes that change a pixel property, the share whose description from the pixels "
        "names that property (`described_pixels`):",
        markdown_table(summarise(table).drop(columns="mean_seconds")),
        "Linear-probe bound (cross-validated accuracy of a logistic regression predicting the cause of each error "
        "image from the representation): how much of the cause a representation holds at all.",
        markdown_table(probe_cases),
    ])


def _merged(path: Path, rows: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    """``rows`` written over the table at ``path``: earlier runs' other cases and methods are kept, so runs add up."""
    if path.is_file():
        earlier = pd.read_csv(path)
        earlier = earlier[~earlier.set_index(key).index.isin(rows.set_index(key).index)]
        rows = pd.concat([earlier, rows], ignore_index=True).sort_values(key, kind="stable")
    rows.to_csv(path, index=False)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=Path("eval-cases"), help="Where the cases live (default ./eval-cases).")
    parser.add_argument("--families", default=",".join(FAMILIES), help=f"Comma-separated (default {','.join(FAMILIES)}).")
    parser.add_argument("--seeds", default="0,1,2", help="Comma-separated seeds (default 0,1,2; 0 is the development seed).")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"Comma-separated (default {','.join(METHODS)}).")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--tiny", action="store_true", help="Tiny cases and one training epoch: checks the suite runs, measures nothing.")
    parser.add_argument("--docs", type=Path, help="Also write DIR/evaluation.md (its rootcause section) and the CSVs there.")
    args = parser.parse_args(argv)
    set_quiet(True)
    scale = TINY if args.tiny else FULL
    families = [f for f in args.families.split(",") if f]
    methods = tuple(m for m in args.methods.split(",") if m)
    unknown = [f for f in families if f not in FAMILIES] + [m for m in methods if m.split(":")[0] not in METHODS]
    if unknown:
        parser.error(f"unknown family or method: {', '.join(unknown)}")
    rows, probes = [], []
    for family, seed, case in each_case(args.cache, families, [int(s) for s in args.seeds.split(",")], scale, args.device):
        case_rows, case_probes = evaluate_case(case, family, seed, methods, args.device)
        rows += case_rows
        probes += case_probes
        show(pd.DataFrame(case_rows).drop(columns="covered_share"))
    args.cache.mkdir(parents=True, exist_ok=True)
    table = _merged(args.cache / "eval_rootcause.csv", pd.DataFrame(rows), ["family", "seed", "method"])
    probe_table = _merged(args.cache / "probe.csv", pd.DataFrame(probes), ["family", "seed", "representation"])
    print("\nall cases:")
    show(table.drop(columns="covered_share"))
    print("\nlinear-probe bound (cross-validated accuracy predicting the cause from the representation):")
    show(probe_table)
    print("\nper method:")
    show(summarise(table))
    if args.docs:
        table.to_csv(args.docs / "eval_rootcause.csv", index=False)
        probe_table.to_csv(args.docs / "eval_probe.csv", index=False)
        path = write_section("rootcause", docs_section(table, probe_table, argv if argv is not None else sys.argv[1:]),
                             args.docs / "evaluation.md")
        print(f"\nwritten: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
