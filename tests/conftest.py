"""Shared fixtures, built once per test run: a tiny simulated gaze case (seed 0), a model trained on it for one
epoch, and that case analysed; tests copy them (:func:`copy_case`) before changing anything."""

from pathlib import Path

import pytest
from click.testing import CliRunner

from hudd.cli import cli
from hudd.sim import SimulationSettings, simulate_case

TINY = SimulationSettings(task="gaze", n_train=160, n_test=64, n_improve=32, size=32, seed=0, hazard_rate_train=0.05, hazard_rate=0.5)
WEAK_OK = "allow_weak_model = true\n"
"""The tiny cases' hudd.toml: their one-epoch models are about chance on the TrainingSet, which hudd refuses to analyse by default."""


@pytest.fixture(scope="session")
def tiny_case(tmp_path_factory) -> Path:
    """A 32 px gaze case: 160 training, 64 test, 32 improvement images, and a hudd.toml of :data:`WEAK_OK`
    (read-only for tests; a test that writes its own hudd.toml appends to it)."""
    case = tmp_path_factory.mktemp("tiny-case")
    simulate_case(case, TINY)
    (case / "hudd.toml").write_text(WEAK_OK)
    return case


@pytest.fixture(scope="session")
def trained_case(tmp_path_factory, tiny_case) -> Path:
    """A copy of the tiny case with ``DNNModels/alexnet-small.pt`` trained for one epoch."""
    import shutil

    case = tmp_path_factory.mktemp("trained") / "case"
    shutil.copytree(tiny_case, case)
    result = CliRunner().invoke(cli, ["--quiet", "train", str(case), "--epochs", "1", "--batch-size", "32"])
    assert result.exit_code == 0, result.output
    return case


def _built(tmp_path_factory, source: Path, name: str, *commands: tuple[str, ...]) -> Path:
    """A copy of ``source`` after these CLI commands, each of which must succeed."""
    import shutil

    case = tmp_path_factory.mktemp(name) / "case"
    shutil.copytree(source, case)
    for command, *args in commands:
        result = run_cli(command, str(case), *args)
        assert result.exit_code == 0, result.output
    return case


@pytest.fixture(scope="session")
def analyzed(tmp_path_factory, trained_case: Path) -> Path:
    """The trained tiny case after ``hudd analyze`` and ``hudd assign`` (labels.csv pre-filled); read only: copy it."""
    return _built(tmp_path_factory, trained_case, "analyzed", ("analyze",), ("assign",))


@pytest.fixture(scope="session")
def explained_case(tmp_path_factory, trained_case: Path) -> Path:
    """The trained tiny case after ``hudd test`` and ``hudd heatmaps``; read only: copy it."""
    return _built(tmp_path_factory, trained_case, "explained", ("test",), ("heatmaps",))


@pytest.fixture(scope="session")
def clustered_case(tmp_path_factory, explained_case: Path) -> Path:
    """``explained_case`` after the paper's clustering (``hudd cluster --method paper``); read only: copy it."""
    return _built(tmp_path_factory, explained_case, "clustered", ("cluster", "--method", "paper"))


@pytest.fixture(scope="session")
def assigned_case(tmp_path_factory, explained_case: Path) -> Path:
    """``explained_case`` after ``hudd cluster`` (the default method) and ``hudd assign --budget 6``; read only: copy it."""
    return _built(tmp_path_factory, explained_case, "assigned", ("cluster",), ("assign", "--budget", "6"))


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` are skipped on a machine without a CUDA device."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


def copy_case(source: Path, tmp_path: Path) -> Path:
    """A writable copy of a session case at ``tmp_path/case``."""
    import shutil

    target = tmp_path / "case"
    shutil.copytree(source, target)
    return target


@pytest.fixture
def case(tmp_path: Path, trained_case: Path) -> Path:
    """A writable copy of the trained tiny case."""
    return copy_case(trained_case, tmp_path)


def run_cli(*args: str):
    """Invoke the CLI in-process; returns click's Result (exit_code, stdout, stderr)."""
    return CliRunner().invoke(cli, ["--quiet", *args])


def one_line_error(result, *fragments: str) -> str:
    """Assert a CLI result is exit 2 with one ``hudd: error:`` line on stderr containing every fragment."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hudd: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    assert "Traceback" not in result.output
    return lines[0]


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models: one torch thread is as fast as two, and far faster when the cores are shared."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def calibrated(model, shape: tuple, seed: int = 0x5EED):
    """``model`` with the BatchNorm statistics of one random batch of 16 ``shape`` images, in eval mode, so that an
    untrained deep model's activations neither vanish nor explode."""
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = 1.0
    with torch.no_grad():
        model.train()(torch.randn(16, *shape, generator=torch.Generator().manual_seed(seed)))
    return model.eval()
