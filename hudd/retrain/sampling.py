"""The numeric core of HUDD's Steps 6-7 and of the paper's baselines: which images to train on.

Notation: the labelled unsafe set holds ``|U_Ci|`` images for each cluster ``C_i``. HUDD balances it
by bootstrap: each cluster's images are resampled with replacement until every cluster has
``max_i |U_Ci|`` members. The baselines of RQ2 spend the same labelling budget on a random subset
of the improvement set (the "reduced improvement set", as large as the unsafe set): B1 keeps its
images the model misclassifies, B2 keeps all of them, each bootstrapped to the size of HUDD's
balanced unsafe set.
"""

from __future__ import annotations

import numpy as np

__all__ = ["bootstrap_balance", "bootstrap_to", "reduced_improvement_set", "mixed_rows"]


def bootstrap_balance(groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices that balance ``groups`` (one label per item) by bootstrap.

    Every group keeps all its items and is topped up with draws (with replacement) from itself
    until it has as many as the largest group. Returns item indices, grouped in sorted group order.
    """
    groups = np.asarray(groups)
    names, counts = np.unique(groups, return_counts=True)
    target = counts.max() if len(counts) else 0
    picked = []
    for name in names:
        members = np.flatnonzero(groups == name)
        extra = rng.choice(members, size=target - len(members), replace=True) if target > len(members) else np.zeros(0, np.int64)
        picked.append(np.concatenate([members, extra]))
    return np.concatenate(picked) if picked else np.zeros(0, np.int64)


def bootstrap_to(n_items: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` indices of ``n_items`` items: all of them once (while they fit), the rest drawn with replacement."""
    if n_items == 0 or size == 0:
        return np.zeros(0, np.int64)
    base = np.arange(n_items)[: size]
    extra = rng.choice(n_items, size=size - len(base), replace=True) if size > len(base) else np.zeros(0, np.int64)
    return np.concatenate([base, extra])


def reduced_improvement_set(n_improvement: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """A random subset (without replacement) of ``size`` improvement images, as sorted indices."""
    return np.sort(rng.choice(n_improvement, size=min(size, n_improvement), replace=False))


def mixed_rows(n_train: int, extra: np.ndarray, epochs: int, mix: str, rng: np.random.Generator, *,
               pass_size: int | None = None) -> tuple[np.ndarray, int]:
    """The pool rows to fine-tune on and the epochs to run over them, the same for every method.

    ``union`` (the paper): the training set (rows ``0..n_train-1``) and ``extra`` every epoch. With a
    few hundred extra images beside thousands of training images the extras are a few percent of
    what the model sees, and the fine-tuning moves little.

    ``paired``: each of the ``epochs`` passes shows ``pass_size`` rows of ``extra`` (default all of
    them) plus as many training images drawn at random (without replacement while the training set
    lasts), so the extras are half of every batch while the training images still hold the rest of
    the input space in place. Over all passes every row of ``extra`` is shown equally often (give or
    take one), so ``extra`` sets the proportions and ``pass_size`` the length: with ``pass_size`` the
    number of labelled images, selections with the same budget train equally long however their
    clusters balance. Returned as one shuffled pass over all the passes' rows (epochs = 1): the cost
    grows with ``pass_size``, not with the training set, so many passes stay cheap.
    """
    extra = np.asarray(extra, dtype=np.int64)
    if mix == "union" or not len(extra):  # no extras (Model Doctor's own method): the training set alone
        return np.concatenate([np.arange(n_train), extra]), epochs
    if mix != "paired":
        raise ValueError(f"unknown retrain mix {mix!r}; use union or paired")
    n_draw = (len(extra) if pass_size is None else pass_size) * epochs
    draw = rng.choice(n_train, size=n_draw, replace=n_draw > n_train) if n_train and n_draw else np.zeros(0, np.int64)
    cycles, rest = divmod(n_draw, len(extra))
    shown = np.tile(extra, cycles)
    if rest:
        shown = np.concatenate([shown, extra[rng.choice(len(extra), size=rest, replace=False)]])
    return np.concatenate([shown, draw]), 1
