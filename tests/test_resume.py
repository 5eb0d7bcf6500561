"""Resuming by rows beyond the heatmaps: ``hudd test``, a feature method's extraction and ``hudd assign``, each
stopped right after its first batch is recorded, compute on the next run only the rows not recorded and end
byte-identical to an uninterrupted run (the heatmaps' own resume tests are in test_steps.py and test_pipeline.py)."""

import hashlib
import json
import shutil
from pathlib import Path

from click.testing import CliRunner

from hudd.cli import cli
from hudd.core import rows
from hudd.steps import assign, feature_cluster, test
from tests.conftest import copy_case, run_cli

BATCH = ("--batch-size", "8")


def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.suffix in (".csv", ".npy", ".npz")}


def _stopped_after_first_record(monkeypatch, *command: str) -> None:
    """Run ``command`` and stop it (Ctrl-C) right after its first batch of rows is recorded."""
    original = rows.record

    def record_then_stop(*args):
        original(*args)
        raise KeyboardInterrupt

    monkeypatch.setattr(rows, "record", record_then_stop)
    assert run_cli(*command).exit_code == 130
    monkeypatch.setattr(rows, "record", original)


def _counting(monkeypatch, module, name: str) -> list[int]:
    """The sizes of the batches the row function ``module.name`` computes from now on."""
    seen: list[int] = []
    original = getattr(module, name)

    def counted(ctx, start, stop, *args):
        for batch in original(ctx, start, stop, *args):
            seen.append(len(next(iter(batch.values()))))
            yield batch

    monkeypatch.setattr(module, name, counted)
    return seen


def test_test_step_resumes_by_rows(case: Path, tmp_path: Path, monkeypatch):
    reference = tmp_path / "reference"
    shutil.copytree(case, reference)
    assert run_cli("test", str(reference), *BATCH).exit_code == 0

    _stopped_after_first_record(monkeypatch, "test", str(case), *BATCH)
    staged = case / "HUDD/.staging/rows/test/TrainingSet"
    assert json.loads((staged / "progress.json").read_text())["rows_done"] == 8
    assert not (case / "HUDD/trainResult.csv").exists()

    seen = _counting(monkeypatch, test, "_predict_rows")
    result = CliRunner().invoke(cli, ["test", str(case), *BATCH])
    assert result.exit_code == 0, result.output
    assert "test TrainingSet: resuming: 8 of 160 rows were computed by an earlier run" in result.stderr
    assert sum(seen) == 160 + 64 - 8, "only the rows not recorded are computed"
    assert _digests(case / "HUDD") == _digests(reference / "HUDD")
    assert not (case / "HUDD/.staging/rows/test").exists(), "the rows are removed once the tables are written"


def test_feature_extraction_resumes_by_rows(explained_case: Path, tmp_path: Path, monkeypatch):
    case, reference = copy_case(explained_case, tmp_path / "a"), copy_case(explained_case, tmp_path / "b")
    command = ("cluster", "--method", "naive", *BATCH)  # the model's own features: the cheapest feature method
    assert run_cli(command[0], str(reference), *command[1:]).exit_code == 0

    _stopped_after_first_record(monkeypatch, command[0], str(case), *command[1:])
    assert json.loads((case / "HUDD/.staging/rows/naive/progress.json").read_text())["rows_done"] == 8

    seen = _counting(monkeypatch, feature_cluster, "_features_rows")
    assert run_cli(command[0], str(case), *command[1:]).exit_code == 0
    n_errors = len((case / "HUDD/ClusterAnalysis/naive/clusters.csv").read_text().splitlines()) - 1
    assert sum(seen) == n_errors - 8 > 0, "only the rows not recorded are computed"
    assert _digests(case / "HUDD/ClusterAnalysis") == _digests(reference / "HUDD/ClusterAnalysis")
    assert not (case / "HUDD/.staging/rows/naive").exists()


def test_assign_resumes_by_rows(assigned_case: Path, tmp_path: Path, monkeypatch):
    case, reference = copy_case(assigned_case, tmp_path / "a"), copy_case(assigned_case, tmp_path / "b")
    command = ("assign", "--budget", "5", *BATCH)  # another budget than the copied case's: assign runs again
    assert run_cli(command[0], str(reference), *command[1:]).exit_code == 0

    _stopped_after_first_record(monkeypatch, command[0], str(case), *command[1:])
    assert json.loads((case / "HUDD/.staging/rows/assign/progress.json").read_text())["rows_done"] == 8

    seen = _counting(monkeypatch, assign, "_linkage_rows")
    assert run_cli(command[0], str(case), *command[1:]).exit_code == 0
    assert sum(seen) == 32 - 8, "only the improvement images not recorded are computed"
    assert _digests(case / "HUDD/UnsafeSet") == _digests(reference / "HUDD/UnsafeSet")
    assert not (case / "HUDD/.staging/rows/assign").exists()
