"""What limits root-cause purity: other representations and clusterers than the default's, and the nominal errors.

On the cases of ``scripts/eval_rootcause.py`` (its ``--cache``; run that first), for the error images of
each case:

1. **Variants of the default** (``joint``: pretrained block features beside the model's logit margins,
   each block weighed equally, Ward, k at the WICD knee): other feature blocks (the model's own layer
   activations, another backbone block, its raw logits or probabilities), other clusterers at the same
   k (spectral, k-means, average linkage on cosine distances, a Gaussian mixture), and other ways of
   choosing k. Each is scored as the suite scores a method (purity, the most clusters one cause
   dominates, the share in clusters smaller than 5).
2. **Nominal errors against each cause**: the cross-validated accuracy of a logistic regression telling
   a cause's error images from the errors on nominal images, beside the majority share. Near the
   majority share, no representation holds what separates them, and no clustering can.

Usage (development seeds only; defaults are chosen on them)::

    .venv/bin/python scripts/eval_variants.py --cache /path/to/eval-cases --seeds 0
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from kneed import KneeLocator
from sklearn.cluster import AgglomerativeClustering, KMeans, SpectralClustering
from sklearn.linear_model import LogisticRegression
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eval_rootcause import FAMILIES, MODEL, _scores, show  # noqa: E402

from hudd.case.data import Case, read_params  # noqa: E402
from hudd.cluster.clustering import choose_k, cut, k_range, ward_linkage, wicd_curve  # noqa: E402
from hudd.cluster.distance import euclidean_distances  # noqa: E402
from hudd.cluster.feature_space import FeatureSpace  # noqa: E402
from hudd.config import load_config  # noqa: E402
from hudd.core.progress import set_quiet  # noqa: E402
from hudd.evaluate.evaluation import NOMINAL  # noqa: E402
from hudd.explain.features import FeatureExtractor, extract_features, make_extractor  # noqa: E402
from hudd.steps.common import error_rows, open_context  # noqa: E402
from hudd.steps.feature_cluster import _error_dataset  # noqa: E402

BLOCKS = {  # variant -> feature blocks, weighed equally
    "default (pretrained + margins)": ("pretrained", "margins"),
    "pretrained alone": ("pretrained",),
    "pretrained block 10 + margins": ("pretrained:10", "margins"),
    "pretrained + logits": ("pretrained", "logits"),
    "pretrained + margins + penultimate": ("pretrained", "margins", "model"),
    "pretrained + margins + middle conv": ("pretrained", "margins", "middle"),
}


def features(case: Case, seed: int) -> tuple[pd.Series, dict[str, np.ndarray]]:
    """The error images (testResult.csv order) and every block a variant uses, from the case's model and the backbone."""
    config = load_config(case.root, {"seed": seed, "device": "cpu", "allow_weak_model": True})
    with open_context(case.root, config, command="eval_variants", model=MODEL) as ctx:
        errors = error_rows(ctx)
        dataset = _error_dataset(ctx, errors)
        model = ctx.model.module
        convolutions = [name for name, sub in model.named_modules() if isinstance(sub, torch.nn.Conv2d)]
        extractors = {"pretrained": make_extractor("efficientnet_lite0", model=model),
                      "pretrained:10": make_extractor("efficientnet_lite0:10", model=model),
                      "margins": make_extractor("margins", model=model), "model": make_extractor("model", model=model),
                      "middle": FeatureExtractor("middle", model, convolutions[len(convolutions) // 2])}
        found = {name: extract_features(e, dataset, batch_size=64, device=ctx.device).astype(np.float64) for name, e in extractors.items()}
        last = [sub for sub in model.modules() if isinstance(sub, torch.nn.Linear)][-1]
        with torch.no_grad():
            found["logits"] = last(torch.from_numpy(found["model"]).float()).double().numpy()
    return errors["image"], found


def joined(blocks: list[np.ndarray]) -> np.ndarray:
    """Blocks standardised side by side, each weighed equally (as :meth:`FeatureSpace.fit` with ``blocks``)."""
    x = np.concatenate(blocks, axis=1)
    return FeatureSpace.fit(x, blocks=tuple(b.shape[1] for b in blocks) if len(blocks) > 1 else ()).transform(x)


def ward(z: np.ndarray, rule: str = "knee") -> tuple[np.ndarray, int]:
    """Ward labels and k: at the default's knee, at 1.5 times it, or at kneedle's knee of WICD itself."""
    distances = euclidean_distances(z, device=torch.device("cpu"))
    linkage = ward_linkage(distances)
    curve = wicd_curve(distances, linkage)
    ks = k_range(len(z))
    k, _ = choose_k(ks, curve[ks - 1])
    if rule == "1.5 x knee":
        k = int(round(1.5 * k))
    elif rule == "WICD knee":
        k = KneeLocator(ks, curve[ks - 1], curve="convex", direction="decreasing").knee or k
    return cut(linkage, int(k)), int(k)


def variants(z: np.ndarray, seed: int):
    """``(name, labels)`` of the other clusterers on the default's space, at the default's k."""
    labels, k = ward(z)
    yield "Ward, knee (default)", labels
    yield "Ward, 1.5 x knee", ward(z, "1.5 x knee")[0]
    yield "Ward, WICD knee", ward(z, "WICD knee")[0]
    yield "spectral (10 neighbours)", SpectralClustering(k, affinity="nearest_neighbors", n_neighbors=10, random_state=seed,
                                                         assign_labels="cluster_qr").fit_predict(z)
    yield "k-means", KMeans(k, n_init=10, random_state=seed).fit_predict(z)
    yield "average linkage, cosine", AgglomerativeClustering(k, metric="cosine", linkage="average").fit_predict(z)
    yield "Gaussian mixture", GaussianMixture(k, covariance_type="diag", random_state=seed, n_init=3).fit_predict(z)


def nominal_probe(x: np.ndarray, causes: np.ndarray, seed: int) -> list[dict]:
    """Per injected cause with >= 5 errors, when there are >= 5 nominal errors: probe accuracy and majority share."""
    rows = []
    if (causes == NOMINAL).sum() < 5:
        return rows
    for cause in sorted(set(causes) - {NOMINAL}):
        chosen = np.isin(causes, [cause, NOMINAL])
        if (causes == cause).sum() < 5:
            continue
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=0.1))
        accuracy = cross_val_score(model, x[chosen], causes[chosen], cv=StratifiedKFold(5, shuffle=True, random_state=seed)).mean()
        rows.append({"cause": cause, "errors": int((causes == cause).sum()), "nominal_errors": int((causes == NOMINAL).sum()),
                     "probe_accuracy": float(accuracy), "majority_share": float(max(np.mean(causes[chosen] == c) for c in (cause, NOMINAL)))})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, required=True, help="The case cache of scripts/eval_rootcause.py.")
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--seeds", default="0", help="Comma-separated (default 0, the development seed).")
    args = parser.parse_args(argv)
    set_quiet(True)
    rows, probes = [], []
    for family in args.families.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            case = Case(args.cache / f"{family}-{seed}")
            if not (case.models / MODEL).is_file():
                print(f"{case.root}: no case; run scripts/eval_rootcause.py --cache {args.cache} first", file=sys.stderr)
                return 2
            params = read_params(case, "TestSet")
            images, found = features(case, seed)
            causes = params.set_index("image").loc[images, "cause"].to_numpy()

            def score(variant: str, labels: np.ndarray) -> None:
                scores = _scores(pd.DataFrame({"image": images, "cluster": [f"C{label + 1}" for label in labels]}), params)
                rows.append({"family": family, "seed": seed, "variant": variant, "clusters": len(set(labels)), **scores})

            for name, blocks in BLOCKS.items():
                score(name, ward(joined([found[b] for b in blocks]))[0])
            default = joined([found[b] for b in BLOCKS["default (pretrained + margins)"]])
            for name, labels in variants(default, seed):
                if not name.endswith("(default)"):
                    score(name, labels)
            probes += [{"family": family, "seed": seed, **row} for row in nominal_probe(default, causes, seed)]
    table = pd.DataFrame(rows)
    show(table[["family", "seed", "variant", "clusters", "purity", "most_per_cause", "small", "uncovered"]])
    print("\nper variant over the cases:")
    show(table.groupby("variant", sort=False).agg(mean_purity=("purity", "mean"), lowest=("purity", "min"),
                                                   most_per_cause=("most_per_cause", "max"), worst_small=("small", "max")).reset_index())
    if probes:
        print("\nnominal errors against each cause (probe on the default's space; near the majority share = inseparable):")
        show(pd.DataFrame(probes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
