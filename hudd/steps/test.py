"""Step 0, ``hudd test``: run the model on the TrainingSet and the TestSet.

Writes ``trainResult.csv`` and ``testResult.csv`` in the workspace, one row per image (see
:func:`hudd.models.predictions.score`): for classification ``image, label, prediction, correct,
confidence``; for keypoint models the error of each keypoint, their mean ``error_px``, the
``worst_keypoint``, ``correct`` = mean error <= ``error_px`` (4 input-image pixels by default) and the
predicted coordinates ``<keypoint>_x, <keypoint>_y``.
The error-inducing test images (``correct == False``) are what HUDD explains; a model hardly better
than chance on the TrainingSet is reported (``weak``), and the steps that explain errors refuse it
unless ``allow_weak_model`` is set.

Resumable: the model's outputs wait under ``.staging/rows/test/`` batch by batch (:mod:`hudd.core.rows`) until
both tables are written, so a killed run with unchanged inputs computes only the batches not done yet.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ..models.predictions import predict_batches, score
from ..core.rows import drop as drop_rows
from ..core.files import write_csv
from ..workspace.readers import read_table, redo
from .common import Context, listing_rows, run_step, sharded, weak_model_line

__all__ = ["TestOutcome", "run", "VERSION", "SPLIT_FILES"]

VERSION = 2  # 2: keypoint models' predicted coordinates in testResult.csv
SPLIT_FILES = {"TrainingSet": "train_result", "TestSet": "test_result"}


@dataclass
class TestOutcome:
    """Per-image results of both sets (read back from the workspace when the step was skipped), and what to say
    when the model is hardly better than chance (:func:`hudd.steps.common.weak_model_line`; "" when it is not)."""

    ran: bool
    train: pd.DataFrame
    test: pd.DataFrame
    weak: str = ""


def _predict_rows(ctx: Context, start: int, stop: int, listing):
    """The model's outputs for rows ``start:stop`` of ``listing`` (one rank's share under torchrun), batch by batch."""
    dataset = ctx.dataset(listing_rows(listing, start, stop), cache=False)
    for outputs in predict_batches(ctx.model.module, dataset, batch_size=ctx.config.batch_size, device=ctx.device,
                                   desc=f"test {listing.split}"):
        yield {"outputs": outputs}


def run(ctx: Context, *, force: bool = False) -> TestOutcome:
    """Run (or skip, when current) the test step; see the module docstring."""
    listings = {split: ctx.listing(split) for split in SPLIT_FILES}
    inputs = {"model": ctx.model_hash, **{split: ctx.listing_hash(listing) for split, listing in listings.items()}}

    def compute(fingerprint: str, resume: bool):
        outputs = []
        for split, listing in listings.items():
            dataset = ctx.dataset(listing, cache=False)
            folder = ctx.workspace.rows_staging("test") / split  # the model's outputs, kept until both tables are written
            raw = sharded(ctx, f"test {split}", _predict_rows, len(listing), listing, folder=folder, fingerprint=fingerprint,
                          resume=resume)["outputs"]
            path = getattr(ctx.workspace, SPLIT_FILES[split])
            write_csv(path, score(dataset, raw, error_px=ctx.config.error_px))
            outputs.append(path)
        drop_rows(ctx.workspace.rows_staging("test"), ctx.workspace.root)
        return outputs

    ran = run_step(ctx, "test", VERSION, config={"error_px": ctx.config.error_px}, inputs=inputs, compute=compute, force=force)
    results = [read_table(path, {"image": "str", "correct": "bool"}, fix=redo("test")) for path in (ctx.workspace.train_result, ctx.workspace.test_result)]
    return TestOutcome(ran, *results, weak=weak_model_line(ctx))
