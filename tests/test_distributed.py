"""hudd under torchrun (two gloo processes on the CPU): each rank computes its own rows, the files are byte-identical
to a one-process run's, a run killed mid-heatmaps resumes computing only what no rank finished, retraining spreads its
runs (or, with --ddp, trains each run over both ranks). The one-process runs use one thread, as each torchrun child
does (OMP_NUM_THREADS=1): byte identity needs the same threads per process."""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from hudd.config import Config
from hudd.core import distributed
from hudd.core.distributed import KILL_AFTER_BATCH, plan_batches
from hudd.core.errors import HuddError
from hudd.explain.lrp import Explainer
from hudd.steps.retrain import check_ddp
from tests.conftest import copy_case, one_line_error, run_cli

BATCH = ["--batch-size", "8"]  # the tiny case's 57 error-inducing images make 8 batches, 4 per rank
COMPARED = (".csv", ".npy", ".npz")  # the tables and arrays; manifest.json (times), report.html, the PNG/GIF/XLSX views are not
ROWS_LINE = re.compile(r"^(.+): rank (\d) of 2: rows (.+) \((\d+) rows\)$", re.M)


def _digests(workspace: Path, under: str = "") -> dict[str, str]:
    root = workspace / under
    return {str(p.relative_to(workspace)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.suffix in COMPARED and ".staging" not in p.parts}


def _one_thread(*commands):
    """Run CLI commands in this process with one thread, as each torchrun child runs (OMP_NUM_THREADS=1)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for command in commands:
            result = run_cli(*command)
            assert result.exit_code == 0, result.output
    finally:
        torch.set_num_threads(threads)


def _torchrun(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    root = Path(__file__).resolve().parents[1]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
                   **(env or {})}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "hudd", *args],
                          env=environment, capture_output=True, text=True, timeout=300)


def _rows(output: str, step: str) -> dict[int, list[tuple[int, int]]]:
    """Rank -> the row ranges it said it computes for ``step``."""
    found = {}
    for what, rank, ranges, _ in ROWS_LINE.findall(output):
        if what == step:
            found[int(rank)] = [tuple(map(int, r.split("-"))) for r in ranges.split(", ") if r != "none"]
    return found


def _assert_disjoint_and_nonempty(rows: dict, n: int) -> None:
    assert set(rows) == {0, 1} and all(rows.values()), rows
    covered = [i for ranges in rows.values() for start, stop in ranges for i in range(start, stop)]
    assert len(covered) == len(set(covered)), f"two ranks computed the same rows: {rows}"
    assert sorted(covered) == list(range(n)), rows


def test_plan_batches_splits_at_batch_boundaries_and_skips_what_is_done():
    plans = plan_batches(57, 8, 2)
    assert plans == [[(0, 32)], [(32, 57)]]
    assert plan_batches(10, 8, 3) == [[], [(0, 8)], [(8, 10)]]
    resumed = plan_batches(57, 8, 2, done=[(0, 8), (32, 40)])  # a rank killed after one batch each
    assert resumed == [[(8, 32)], [(40, 57)]]
    assert plan_batches(57, 8, 1, done=[(0, 12)]) == [[(8, 57)]], "a batch only partly done is computed again"


@pytest.fixture(scope="module")
def one_process(tmp_path_factory, trained_case: Path) -> dict[str, Path]:
    """The tiny case analysed (``analyzed``), then assigned and retrained with two runs (``retrained``), by one
    process with one thread and batches of 8."""
    analyzed = copy_case(trained_case, tmp_path_factory.mktemp("one-process-analyzed"))
    _one_thread(("analyze", str(analyzed), *BATCH))
    retrained = tmp_path_factory.mktemp("one-process-retrained") / "case"
    shutil.copytree(analyzed, retrained)
    _one_thread(("retrain", str(retrained), *BATCH, "--runs", "2", "--retrain-epochs", "1"))
    return {"analyzed": analyzed, "retrained": retrained}


@pytest.mark.slow
def test_torchrun_analyze_killed_mid_heatmaps_resumes_to_a_one_process_run(one_process, trained_case: Path, tmp_path: Path,
                                                                          monkeypatch):
    case = copy_case(trained_case, tmp_path)
    n_errors = len(pd.read_csv(one_process["analyzed"] / "HUDD/Heatmaps/images.csv"))

    killed = _torchrun("analyze", str(case), *BATCH, env={KILL_AFTER_BATCH: "1:heatmaps"})
    assert killed.returncode != 0, "rank 1 was killed after its first batch of heatmaps"
    for step, n in (("test TrainingSet", 160), ("test TestSet", 64), ("joint features", n_errors), ("heatmaps", n_errors)):
        _assert_disjoint_and_nonempty(_rows(killed.stderr, step), n)
    assert not (case / "HUDD/Heatmaps").exists(), "unfinished heatmaps never look finished"
    staged = case / "HUDD/.staging/heatmaps/Heatmaps"
    rank_1 = json.loads((staged / "progress-1.json").read_text())["done"]
    start = _rows(killed.stderr, "heatmaps")[1][0][0]
    assert rank_1 == [[start, start + 8]], "rank 1 recorded its one finished batch"
    done = sum(json.loads(path.read_text())["rows_done"] for path in staged.glob("progress*.json"))

    computed = []  # the rerun, alone: it resumes from every rank's records
    relevance = Explainer.relevance
    monkeypatch.setattr(Explainer, "relevance", lambda self, images, target=None: computed.append(len(images)) or relevance(self, images, target))
    _one_thread(("analyze", str(case), *BATCH))
    assert sum(computed) == n_errors - done < n_errors, "only the batches no rank finished are computed"
    assert _digests(case / "HUDD") == _digests(one_process["analyzed"] / "HUDD")


@pytest.mark.slow
def test_torchrun_assign_and_retrain_match_one_process(one_process, tmp_path: Path):
    case = copy_case(one_process["analyzed"], tmp_path)
    reference = one_process["retrained"]

    result = _torchrun("retrain", str(case), *BATCH, "--runs", "2", "--retrain-epochs", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    _assert_disjoint_and_nonempty(_rows(result.stderr, "assign"), len(np.load(case / "HUDD/UnsafeSet/single_linkage.npy")))
    assert re.search(r"^retrain: rank 0 of 2: runs 1$", result.stderr, re.M) and re.search(r"^retrain: rank 1 of 2: runs 2$", result.stderr, re.M)
    assert _digests(case / "HUDD", "UnsafeSet") == _digests(reference / "HUDD", "UnsafeSet")
    assert (case / "HUDD/Retrain/metrics.csv").read_bytes() == (reference / "HUDD/Retrain/metrics.csv").read_bytes()
    mine, theirs = (torch.load(c / "DNNModels/alexnet-small-hudd.pt", weights_only=True)["state_dict"] for c in (case, reference))
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine), "the saved model is run 1's, as alone"


def test_ddp_alone_is_one_line_naming_torchrun(analyzed: Path, tmp_path: Path):
    case = copy_case(analyzed, tmp_path)
    one_line_error(run_cli("retrain", str(case), "--ddp"), "--ddp", "torchrun")


def test_ddp_refuses_model_doctor(monkeypatch):
    monkeypatch.setattr(distributed, "active", lambda: True)
    with pytest.raises(HuddError, match=r"--ddp: Model Doctor's treatment"):
        check_ddp(Config(ddp=True, treatment="doctor"))


@pytest.mark.slow
def test_torchrun_retrain_ddp_trains_one_run_over_both_ranks(one_process, tmp_path: Path):
    case = copy_case(one_process["retrained"], tmp_path)  # its unsafe set is current: only the retraining runs

    result = _torchrun("retrain", str(case), *BATCH, "--runs", "1", "--ddp", "--no-baselines", "--retrain-epochs", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    lines = re.findall(r"^retrain hudd run 1/1: rank (\d) of 2: DDP: batches (\d+), \d+, \.\.\. of every epoch \((\d+) per epoch",
                       result.stderr, re.M)
    shares = {int(rank): (int(first), int(n)) for rank, first, n in lines}
    assert shares.keys() == {0, 1}, "both ranks trained the run"
    assert shares[0][0] == 1 and shares[1][0] == 2 and shares[0][1] == shares[1][1] > 0, "each rank every other batch"
    metrics = pd.read_csv(case / "HUDD/Retrain/metrics.csv")
    assert list(metrics.columns) == list(pd.read_csv(one_process["retrained"] / "HUDD/Retrain/metrics.csv").columns)
    assert metrics["method"].tolist() == ["original", "hudd"], "rank 0 alone evaluates the run"
    retrained = torch.load(case / "DNNModels/alexnet-small-hudd.pt", weights_only=True)["state_dict"]
    original = torch.load(case / "DNNModels/alexnet-small.pt", weights_only=True)["state_dict"]
    assert any(not torch.equal(retrained[k], original[k]) for k in retrained), "the saved model was trained"
